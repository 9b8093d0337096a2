"""DuckDB connection setup (extensions, settings), SQL file loading and literal quoting."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import duckdb

from ingest.errors import ConfigError, DatabaseError, DatabaseInUseError

DUCKDB_VERSION = "v1.5.5"
# httpfs must be loaded before quack on both ends, or ATTACH tries to download it.
EXTENSIONS = ("httpfs", "quack", "excel")
# A writer waits this long for the file's lock: a reader of the file (the dashboard while the
# worker is down) holds it for milliseconds at a time; another writer holds it for good.
WRITE_LOCK_WAIT_S = 5.0


def extension_path(name: str) -> Path:
    """Path of an extension binary shipped by the `duckdb-extension-<name>` wheel."""
    package = f"duckdb_extension_{name}"
    try:
        root = resources.files(package)
    except ModuleNotFoundError as e:
        raise DatabaseError(
            f"DuckDB extension {name!r} is not installed: pip install duckdb-extension-{name}"
        ) from e
    path = Path(str(root)) / "extensions" / DUCKDB_VERSION / f"{name}.duckdb_extension"
    if not path.exists():
        raise DatabaseError(f"DuckDB extension {name!r} missing at {path}")
    return path


def load_extensions(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = EXTENSIONS) -> None:
    for name in names:
        con.execute(f"LOAD '{extension_path(name)}'")


_MEMORY_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.I)


def memory_size(text: str) -> str:
    """A memory size as DuckDB reads it (`512MB`, `1.5GB`, `2GiB`), checked and normalised."""
    match = _MEMORY_SIZE.fullmatch(text)
    if match is None:
        raise ConfigError(f"memory size {text!r} is not a size: give e.g. 1GB, 512MB or 2GiB")
    number, unit = match.groups()
    units = {u.lower(): u for u in ("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB")}
    return f"{number}{units[unit.lower()]}"


def set_memory_limit(con: duckdb.DuckDBPyConnection, size: str) -> None:
    """Cap DuckDB's memory (its buffer pool: cold blocks are read back from the file)."""
    con.execute(f"SET memory_limit = {string_literal(memory_size(size))}")


def configure(con: duckdb.DuckDBPyConnection) -> None:
    """Settings every Tiretrack connection uses: offline, UTC."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET TimeZone = 'UTC'")


def _connect_waiting_for_readers(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """duckdb.connect; a writer retries for WRITE_LOCK_WAIT_S while the lock is held."""
    deadline = time.monotonic() + (0.0 if read_only else WRITE_LOCK_WAIT_S)
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def connect_file(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the database file; a lock held by another process becomes DatabaseInUseError."""
    if read_only and not path.exists():
        raise DatabaseError(f"database {path} does not exist: run `tiretrack ingest` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = _connect_waiting_for_readers(path, read_only=read_only)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            holder = re.search(r"\(PID (\d+)\)", str(e))
            who = f" (process {holder.group(1)})" if holder else ""
            raise DatabaseInUseError(
                f"database {path} is in use by another process{who}; stop it or give another --db"
            ) from e
        raise DatabaseError(f"cannot open database {path}: {e}") from e
    configure(con)
    return con


def connect_memory() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    configure(con)
    return con


@functools.cache  # the worker's fold reads about ten of these per batch; they never change
def sql_file(name: str) -> str:
    """Text of a file in ingest/sql/, with whole-line comments removed."""
    text = resources.files("ingest").joinpath("sql", name).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def split_statements(sql: str) -> list[str]:
    """Split a file of statements on ';' at line ends (our SQL files put one there)."""
    return [s.strip() for s in re.split(r";\s*\n", sql + "\n") if s.strip()]


def render(template: str, **parts: str) -> str:
    """Fill {name} placeholders of a SQL template with internal SQL fragments (never user text)."""
    for name, fragment in parts.items():
        placeholder = "{" + name + "}"
        if placeholder not in template:
            raise KeyError(f"template has no {placeholder}")
        template = template.replace(placeholder, fragment)
    return template


def timestamp_literal(value: dt.datetime) -> str:
    """A TIMESTAMPTZ literal for an aware datetime, for the Quack paths that take no parameters."""
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    utc = value.astimezone(dt.UTC)
    return f"TIMESTAMPTZ '{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def number_literal(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("number must be finite")
    return repr(float(value))


def in_list(values: Sequence[str]) -> str:
    """`('a', 'b')`: string literals for an IN list. DuckDB answers `key IN (literals)` from a
    primary key's index, which a bound list does not reach."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join(string_literal(v) for v in values) + ")"


def string_literal(value: str) -> str:
    """A SQL string literal: quotes doubled; NUL is refused (DuckDB strings cannot hold it)."""
    if "\x00" in value:
        raise ValueError("string contains NUL")
    return "'" + value.replace("'", "''") + "'"
