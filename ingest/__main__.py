"""`python -m ingest` runs the `tiretrack` command."""

from ingest.cli import main

main()
