"""`tiretrack shell`: the DuckDB CLI, attached to the live worker (or the idle database file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ingest.database import extension_path, string_literal
from ingest.errors import ReaderError
from ingest.serve import read_endpoint


def init_script(db_path: Path) -> str:
    """DuckDB CLI statements that attach the store as `live`."""
    endpoint = read_endpoint(db_path)
    loads = "".join(
        f"LOAD {string_literal(str(extension_path(name)))};\n" for name in ("httpfs", "quack")
    )
    if endpoint is not None:
        uri, token = string_literal(endpoint.uri), string_literal(endpoint.token)
        return (
            f"{loads}ATTACH {uri} AS live (TOKEN {token});\n"
            ".print 'Attached the live worker as live: FROM live.query(''FROM shipments_now'')'\n"
        )
    if not db_path.exists():
        raise ReaderError(f"database {db_path} does not exist: run `tiretrack ingest` first")
    path = string_literal(str(db_path))
    return (
        f"{loads}ATTACH {path} AS live (READ_ONLY);\nUSE live;\n"
        ".print 'Opened the database file read-only (no worker is serving it)'\n"
    )


def run_shell(db_path: Path) -> int:
    # The duckdb-cli wheel installs next to this interpreter, which may not be on PATH.
    beside = Path(sys.executable).parent / "duckdb"
    binary = str(beside) if beside.exists() else shutil.which("duckdb")
    if binary is None:
        raise ReaderError("the DuckDB CLI is not installed: pip install duckdb-cli==1.5.5")
    script = init_script(db_path)
    # The token goes through a private file, never the command line (visible to `ps`).
    with tempfile.TemporaryDirectory(prefix="tiretrack-shell-") as tmp:
        init = Path(tmp) / "init.sql"
        fd = os.open(init, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(script)
        return subprocess.call([binary, "-init", str(init)])
