"""The `sessions` check of `tiretrack chaos` at a small size: real broker, worker, dashboard and
Chromium sessions; it reports its figures, and a session whose page shows an error fails it.

Speed is never asserted: the check reports its latencies and rates, the tests only that they
are there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ingest.broker import LocalBroker
from ingest.sessions import (
    ARRIVAL_INTERVAL_S,
    LIGHT_PAGES,
    MAP_PAGE,
    SessionsSettings,
    base_path_probe,
    page_titles,
    plan_sessions,
    run_sessions,
)
from tests.conftest import Topics, tiretrack

pytestmark = pytest.mark.browser

LINE = re.compile(
    r"sessions: 3 served for 20 s at 1,000 events/s, 0 errors, query p95 \d+ ms, "
    r"worker kept [\d,]+ events/s"
)


def test_three_sessions_are_served_without_errors_and_report_their_figures(
    tmp_path: Path,
) -> None:
    out = tmp_path / "chaos.json"
    result = tiretrack(
        "chaos", "--skip", "crashes", "--skip", "fuzz", "--skip", "permutations",
        "--sessions", "3", "--session-seconds", "20", "--session-rate", "1000",
        "--json", str(out), "--work-dir", str(tmp_path / "work"), timeout=600,
    )  # fmt: skip
    print(result.stdout)
    assert LINE.search(result.stdout), result.stdout
    report = json.loads(out.read_text())
    assert report["ok"] and report["failures"] == []
    sessions = report["checks"]["sessions"]
    assert (sessions["served"], sessions["errors"], sessions["first_errors"]) == (3, 0, [])
    assert [s["page"] for s in sessions["per_session"]] == ["/delays", "/kpis", "/inventory"]
    for session in sessions["per_session"]:
        assert session["form_s"] is not None and session["ready_s"] is not None
        assert session["stayed_s"] > 0 and session["probes"] > 0
        assert session["frames_in_window"] > 0, "the page's live fragments did not refresh"
    # Every query group the pages use, timed from a separate reader during the window.
    latency = sessions["query_latency"]
    assert set(latency) == {"alerts", "inventory", "kpis", "map, delays, health", "all"}
    for group in latency.values():
        assert group["runs"] > 0 and group["p50_ms"] is not None and group["p95_ms"] is not None
    assert sessions["query_failures"] == [] and sessions["query_rounds"] > 0
    assert sessions["worker_kept_eps"] > 0 and sessions["producer_sent_eps"] > 0
    assert sessions["window_s"] >= 20
    assert sessions["messages_stored"] > 0


def test_a_session_whose_page_shows_an_error_fails_the_check(
    broker: LocalBroker, topics: Topics, tmp_path: Path
) -> None:
    # The dashboard reads a database that does not exist: every page says the worker is
    # unreachable, in an error box, instead of its content.
    report = run_sessions(
        topics.settings(broker),
        tmp_path,
        SessionsSettings(sessions=1, rate=200, seconds=5),
        dashboard_db=tmp_path / "missing.duckdb",
    )
    print(report.line(), *report.details(), sep="\n")
    assert report.failure is not None
    assert report.failure.startswith("1 error(s) in 1 of 1 sessions, first: session 1 (/delays)")
    assert "error on the page: Worker unreachable since" in report.failure
    assert report.served == 0 and report.sessions_with_errors == 1
    assert "sessions: 0 served for 5 s at 200 events/s, 1 error," in report.line()
    # The rest of the run still measured what it could.
    assert report.worker_kept_eps is not None and report.query_latency["all"]["runs"] > 0


def test_sessions_rotate_over_the_light_pages_with_one_map_from_ten_sessions() -> None:
    titles = page_titles()
    assert titles[MAP_PAGE[0]] == "Live map"  # the default page, at "/"
    three = plan_sessions(3, titles)
    assert [(p.path, p.title) for p in three] == [
        ("delays", "Delays & exceptions"), ("kpis", "KPIs"), ("inventory", "Inventory flows")
    ]  # fmt: skip
    assert [p.arrive_s for p in three] == [0.0, ARRIVAL_INTERVAL_S, 2 * ARRIVAL_INTERVAL_S]
    assert not any(p.is_map for p in plan_sessions(9, titles))
    twenty = plan_sessions(20, titles)
    assert [p.number for p in twenty if p.is_map] == [10]
    assert sum(p.is_map for p in plan_sessions(40, titles)) == 1
    light = [p.path for p in twenty if not p.is_map]
    assert sorted({light.count(path) for path, _ in LIGHT_PAGES}) == [3, 4]


def test_streamlits_base_path_probes_are_not_errors() -> None:
    assert base_path_probe("http://127.0.0.1:8501/delays/_stcore/health")
    assert base_path_probe("http://127.0.0.1:8501/kpis/_stcore/host-config")
    assert not base_path_probe("http://127.0.0.1:8501/_stcore/health")
    assert not base_path_probe("http://127.0.0.1:8501/_stcore/host-config")
    assert not base_path_probe("http://127.0.0.1:8501/delays/_stcore/stream")
    assert not base_path_probe("http://127.0.0.1:8501/app/static/europe_countries.geojson")
