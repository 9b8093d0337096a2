"""Shared pieces of the browser tests: the dashboard served as `tiretrack dashboard` serves it,
and Debian Chromium driven by Playwright with the flags this offline machine needs."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, sync_playwright

from ingest.broker import free_port
from ingest.config import REPO_DIR
from ingest.processes import dashboard_command, wait_http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a child started in its own session, and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def served_dashboard(db_path: Path, workdir: Path, *streamlit_args: str) -> Iterator[str]:
    """The dashboard on a free loopback port, started with the same command as
    `tiretrack dashboard`; yields its URL once /_stcore/health answers."""
    port = free_port()
    log = workdir / "streamlit.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            dashboard_command(db_path, "127.0.0.1", port, streamlit_args),
            cwd=REPO_DIR,
            env=os.environ | {"TIRETRACK_DB": str(db_path)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{url}/_stcore/health", 60, process), log.read_text()
        yield url
    finally:
        stop(process)


@contextmanager
def chromium(profile: Path, **options: Any) -> Iterator[BrowserContext]:
    """A fresh Chromium profile (never `playwright install`: nothing can be downloaded)."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    options.setdefault("viewport", {"width": 1400, "height": 1000})
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def new_page(browser: BrowserContext, timeout_ms: float | None = None) -> Iterator[Page]:
    page = browser.new_page()
    if timeout_ms is not None:
        page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        page.close()  # one live map at a time: it costs a core
