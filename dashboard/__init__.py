"""The Streamlit dashboard: reads the worker's store, live over Quack or from the file."""
