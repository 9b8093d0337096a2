"""Serves the worker's database to other processes over DuckDB's Quack protocol.

The endpoint is written to `<db>.serve.json` and the token to `<db>.token` (mode 0600), so
readers on this machine find both from the database path alone; the token is never logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ingest.config import ServeSettings
from ingest.errors import DatabaseError

log = logging.getLogger(__name__)

TOKEN_ENV = "TIRETRACK_QUACK_TOKEN"


def token_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".token")


def endpoint_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".serve.json")


@dataclass(frozen=True)
class Endpoint:
    uri: str
    token: str
    pid: int | None = None


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, even if it existed with looser permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def start_serving(
    con: duckdb.DuckDBPyConnection, db_path: Path, settings: ServeSettings
) -> Endpoint:
    """Start the Quack server on the writer's connection and publish how to reach it."""
    try:
        loopback = settings.host == "localhost" or ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        log.warning("serving the database on %s: reachable from other machines", settings.host)
    token = settings.token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    uri = f"quack:{settings.host}:{settings.port}"
    try:
        con.execute(
            "SELECT * FROM quack_serve(?, token => ?, allow_other_hostname => ?)",
            [uri, token, not loopback],
        ).fetchall()
    except duckdb.Error as e:
        raise DatabaseError(
            f"cannot serve the database on {settings.host}:{settings.port} ({e}); "
            "is another worker running? pick another --serve-port"
        ) from e
    _write_private(token_path(db_path), token)
    _write_private(
        endpoint_path(db_path),
        json.dumps({"uri": uri, "token_file": str(token_path(db_path)), "pid": os.getpid()}),
    )
    log.info("serving %s on %s (token in %s)", db_path, uri, token_path(db_path))
    return Endpoint(uri, token, os.getpid())


def stop_serving(con: duckdb.DuckDBPyConnection, db_path: Path, endpoint: Endpoint) -> None:
    endpoint_path(db_path).unlink(missing_ok=True)
    try:
        con.execute("CALL quack_stop(?)", [endpoint.uri])
    except duckdb.Error as e:
        log.debug("quack_stop: %s", e)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_endpoint(db_path: Path) -> Endpoint | None:
    """The endpoint a running worker published for this database, if any."""
    try:
        info = json.loads(endpoint_path(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _alive(info.get("pid")):
        return None  # left behind by a worker that was killed
    token = os.environ.get(TOKEN_ENV)
    if not token:
        try:
            token = Path(info["token_file"]).read_text(encoding="utf-8").strip()
        except (OSError, KeyError):
            return None
    return Endpoint(str(info.get("uri")), token, info.get("pid"))
