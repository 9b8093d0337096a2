"""The freshness banner in a real browser with a real worker: live while the worker ingests,
"Stale since" within seconds of the worker being killed, and live again once it is restarted,
in the same page (the live fragment; no reload). The worker is restarted while the database
file is being read, as the dashboard reads it with the worker down: it must wait for the reader,
not give up. The seconds each change took are printed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from ingest import chaos
from ingest.broker import LocalBroker, free_port
from ingest.readers import open_reader
from tests.browser.harness import chromium, new_page, served_dashboard
from tests.conftest import REPO, Topics

pytestmark = pytest.mark.browser

STALE = "Stale since"
LIVE = "Live ·"
UNREACHABLE = "Worker unreachable"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `check()` holds; fails after timeout_s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def accepted(db: Path) -> int:
    try:
        reader = open_reader(db)
    except Exception:  # the worker may still be starting; the caller polls until a deadline
        return -1
    try:
        return int(reader.query("SELECT accepted FROM ingest_stats").column(0)[0].as_py())
    except Exception:  # same: not migrated or not serving yet
        return -1
    finally:
        reader.close()


def shows(page: Page, text: str) -> bool:
    return page.get_by_text(text).count() > 0


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_stale_banner_comes_and_goes_with_the_worker(
    broker: LocalBroker, topics: Topics, tmp_path: Path
) -> None:
    db = tmp_path / "stale.duckdb"
    worker_log = tmp_path / "worker.log"
    serve = ("--serve-port", str(free_port()))
    kafka = topics.settings(broker)
    with (tmp_path / "simulator.log").open("w") as sim_log:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "ingest", "simulate", *topics.cli_args(broker),
             "--rate", "50", "--seed", "3"],
            cwd=REPO, stdout=sim_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = chaos.start_worker(kafka, db, worker_log, *serve)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: accepted(db) > 0, 90, "the worker storing events")
        with (
            served_dashboard(db, tmp_path) as url,
            chromium(tmp_path / "profile") as browser,
            new_page(browser) as page,
        ):
            page.goto(f"{url}/pipeline_health")
            page.get_by_text(LIVE).first.wait_for(timeout=60_000)
            assert not shows(page, STALE)
            page.evaluate("window.tiretrackNoReload = true")  # gone if the page reloads

            worker.send_signal(signal.SIGKILL)
            worker.wait()
            stale_after = wait_until(lambda: shows(page, STALE), 60, "the stale banner")
            banner = page.get_by_text(STALE).first.inner_text()
            assert "the worker is not running" in banner, banner
            assert not shows(page, LIVE)

            reading = open_reader(db)  # the file, read-only, as the dashboard reads it now
            assert not reading.remote
            restarted_at = time.monotonic()
            restarted = chaos.start_worker(kafka, db, worker_log, *serve)
            time.sleep(1.0)
            reading.close()
            seen: set[str] = set()

            def live_again() -> bool:
                assert restarted.poll() is None, worker_log.read_text()[-3000:]
                seen.update(text for text in (STALE, UNREACHABLE) if shows(page, text))
                # Every element recovers, not just the banner: each panel refreshes on its own
                # timer, and one may still show the brief "unreachable" of the restart window
                # (the worker has opened the file but not started serving yet).
                return shows(page, LIVE) and not shows(page, STALE) and not shows(page, UNREACHABLE)

            wait_until(live_again, 60, "the banner going away")
            live_after = time.monotonic() - restarted_at
            assert page.evaluate("window.tiretrackNoReload") is True, "the page was reloaded"
        print(
            f"\nstale banner {stale_after:.1f} s after SIGKILL; live again {live_after:.1f} s "
            f"after the restart; shown meanwhile: {sorted(seen) or 'nothing else'}"
        )
    finally:
        for process in (restarted, worker, simulator):
            if process is not None:
                stop(process)
