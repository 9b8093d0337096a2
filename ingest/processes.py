"""Starts and supervises the long-running processes: the dashboard, and the whole demo."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingest.alert_acks import kafka_env, kafka_settings_from_env
from ingest.broker import start_broker
from ingest.config import REPO_DIR, KafkaSettings
from ingest.errors import TiretrackError

DASHBOARD_APP = REPO_DIR / "dashboard" / "app.py"


def dashboard_command(
    db_path: Path, host: str, port: int, streamlit_args: Sequence[str] = ()
) -> list[str]:
    """Streamlit in production mode: headless, no file watcher, no telemetry."""
    return [
        sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        *streamlit_args,
        "--", "--db", str(db_path),
    ]  # fmt: skip


def child_env(db_path: Path, kafka: KafkaSettings) -> dict[str, str]:
    """A child's environment: the database, and Kafka as the `tiretrack` options would give it
    (the dashboard has no Kafka options; it sends alert acknowledgements with these)."""
    return os.environ | kafka_env(kafka) | {"TIRETRACK_DB": str(db_path)}


def run_dashboard(db_path: Path, host: str, port: int) -> int:
    env = child_env(db_path, kafka_settings_from_env())
    process = subprocess.Popen(dashboard_command(db_path, host, port), cwd=REPO_DIR, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[Any]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _tiretrack(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest", *args]


def _stop_all(processes: list[subprocess.Popen[Any]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_demo(
    *,
    db_path: Path,
    broker_port: int,
    dashboard_port: int,
    serve_port: int,
    rate: float,
    time_scale: float,
    malformed_rate: float,
    alert_rules: Path,
    webhook_url: str | None,
    webhook_timeout: float,
) -> int:
    """Broker, worker, simulator, dashboard; prints the URL; Ctrl-C stops everything."""
    broker = start_broker("127.0.0.1", broker_port)
    bootstrap = broker.bootstrap_servers
    # The broker keeps nothing across restarts: start from an empty database too, so the
    # offsets stored in it match the new, empty topics.
    for suffix in ("", ".wal"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    kafka = dataclasses.replace(kafka_settings_from_env(), bootstrap_servers=bootstrap)
    env = child_env(db_path, kafka)
    processes: dict[str, subprocess.Popen[Any]] = {}
    stopping = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def start(name: str, command: list[str]) -> subprocess.Popen[Any]:
        processes[name] = subprocess.Popen(command, env=env, cwd=REPO_DIR)
        return processes[name]

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # Simulated durations shrink by time_scale, so the on-time tolerance shrinks with them.
        # So do the alert rules' event-time thresholds (a 60-minute silent tracker: 1 minute).
        tolerance = 60.0 / time_scale
        webhook = ["--webhook-url", webhook_url] if webhook_url else []
        start("worker", _tiretrack(
            "ingest", "--serve-port", str(serve_port), "--on-time-tolerance", f"{tolerance:g}",
            "--alert-rules", str(alert_rules), "--alert-time-scale", str(time_scale),
            *webhook, "--webhook-timeout-s", str(webhook_timeout),
        ))  # fmt: skip
        start("simulator", _tiretrack(
            "simulate", "--rate", str(rate), "--time-scale", str(time_scale),
            "--malformed-rate", str(malformed_rate), "--duplicate-rate", "0.01",
            "--out-of-order-rate", "0.01",
        ))  # fmt: skip
        dashboard = start("dashboard", dashboard_command(db_path, "127.0.0.1", dashboard_port))
        url = f"http://127.0.0.1:{dashboard_port}"
        if not wait_http(f"{url}/_stcore/health", 60, dashboard):
            raise TiretrackError(f"the dashboard did not start on port {dashboard_port}")
        print(
            f"\nTiretrack demo running: open {url}\n"
            f"  broker {bootstrap}, database {db_path}; Ctrl-C stops everything\n",
            flush=True,
        )
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise TiretrackError(
                        f"the demo's {name} exited with code {process.returncode}; "
                        "stopping the demo"
                    )
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(list(processes.values()))
        broker.stop()
