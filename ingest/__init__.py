"""Tiretrack ingest side: consume contract events from Kafka, keep them in DuckDB, serve them."""
