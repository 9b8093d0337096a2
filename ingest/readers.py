"""Read side of the store: the running worker over Quack, or the database file when it is idle.

Over Quack the whole SQL text runs on the worker (`live.query(...)`), which takes no bound
parameters: callers build SQL only from internal fragments and the literal helpers in
`ingest.database`, never from raw user text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from ingest.database import connect_file, connect_memory, load_extensions, string_literal
from ingest.errors import DatabaseInUseError, ReaderError
from ingest.serve import Endpoint, read_endpoint

log = logging.getLogger(__name__)


class Reader:
    """One read-only view of the store; `source` says where the rows come from."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, *, remote: bool) -> None:
        self._con = con
        self.source = source
        self.remote = remote

    def query(self, sql: str) -> pa.Table:
        """Run SQL where the data is and return the result as Arrow."""
        text = f"FROM live.query({string_literal(sql)})" if self.remote else sql
        try:
            return self._con.cursor().execute(text).to_arrow_table()
        except duckdb.Error as e:
            raise ReaderError(f"query on {self.source} failed: {e}") from e

    def close(self) -> None:
        self._con.close()


def attach_endpoint(endpoint: Endpoint) -> Reader:
    con = connect_memory()
    try:
        load_extensions(con, ("httpfs", "quack"))
        uri, token = string_literal(endpoint.uri), string_literal(endpoint.token)
        con.execute(f"ATTACH {uri} AS live (TOKEN {token})")
    except duckdb.Error as e:
        con.close()
        raise ReaderError(
            f"the worker's database server at {endpoint.uri} does not answer ({e}); "
            "is `tiretrack ingest` running?"
        ) from e
    return Reader(con, endpoint.uri, remote=True)


def open_reader(db_path: Path) -> Reader:
    """The live worker's database over Quack when it runs, else the file read-only."""
    try:
        con = connect_file(db_path, read_only=True)
    except DatabaseInUseError as e:
        endpoint = read_endpoint(db_path)
        if endpoint is None:
            raise ReaderError(
                f"{db_path} is held by a process that does not serve it "
                "(start the worker without --no-serve, or stop that process)"
            ) from e
        return attach_endpoint(endpoint)
    return Reader(con, str(db_path), remote=False)
