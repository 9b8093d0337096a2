"""`tiretrack bench` at a tiny size: every figure is measured, and every target is reported.

Speed is never asserted here: the benchmark reports targets, tests do not fail on time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ingest.bench import TARGET_TEXTS, bench

pytestmark = pytest.mark.integration

TOP_LEVEL_NUMBERS = (
    "consume_ceiling_eps",
    "bulk_load_ceiling_eps",
    "naive_eps",
    "ingest_eps",
    "ingest_vs_bulk_load_ratio",
    "ingest_vs_naive_ratio",
    "freshness_ms_p50",
    "freshness_ms_p95",
    "freshness_ms_p99",
    "freshness_ms_p50_at_500",
    "freshness_ms_p95_at_500",
    "freshness_ms_p99_at_500",
    "broker_latency_ms_p50_at_500",
    "broker_latency_ms_p95_at_500",
    "broker_latency_ms_p99_at_500",
    "worker_rss_mb_peak",
    "db_bytes_per_million_events",
    "stored_events",
    "ingest_eps_alerts",
    "ingest_eps_alerts_dead_webhook",
    "dead_webhook_vs_alerts_ratio",
)
# Some queries the dashboard runs; the bench finds the others (and those added later) itself.
EXPECTED_QUERIES = (
    "trucks",
    "trucks@as_of",
    "sites",
    "lanes",
    "alert.open_alerts",
    "alert.resolved_alerts",
    "export.shipments_now",
    "export.inventory_now",
    "export.in_transit_now",
    "export.shipments_asof",
)


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_bench_measures_everything_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "--events", "20000", "--naive-events", "500", "--rate", "500",
        "--freshness-seconds", "3", "--query-runs", "3",
        "--json", str(out), "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())

    for key in TOP_LEVEL_NUMBERS:
        assert positive(results[key]), f"{key} = {results.get(key)!r}"
    assert results["stored_events"] >= 19_000  # ~20,000 distinct valid events stored
    run = results["ingest_runs"][0]
    assert run["messages"] == results["settings"]["messages_produced"]
    assert run["messages"] == results["consume_ceiling_messages"]
    assert results["naive_messages"] == 500
    alerts, dead = results["alert_runs"]["alerts"], results["alert_runs"]["alerts_dead_webhook"]
    assert dead["messages"] == alerts["messages"] == run["messages"]  # freshness: other topics
    assert dead["alert_events"] > 0
    webhook = dead["webhook"]
    assert webhook["queued"] > 0 and webhook["delivered"] == 0 and webhook["last_error"]

    fresh, on_broker = results["freshness"][0], results["broker_latency"][0]
    for latency in (fresh, on_broker):
        assert latency["rate"] == 500 and latency["samples"] > 1000
        assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert on_broker["unseen"] == 0  # a plain consumer gets every message delivered
    assert on_broker["poll_p50_ms"] is None and positive(fresh["poll_p50_ms"])
    assert "NaN" not in out.read_text()  # strict JSON, for jq and other readers
    assert "broker latency p50/p95/p99 at 500/s" in result.output

    timings = results["queries"]["20000"]["queries"]
    assert results["queries"]["20000"]["problems"] == []  # every builder had its sample values
    assert not [name for name, t in timings.items() if t["error"]], timings
    for name in EXPECTED_QUERIES:
        assert name in timings, f"query {name} was not timed"
    for stat in ("query_ms_p50", "query_ms_p95"):
        assert set(results[stat]["20000"]) == set(timings)
        assert all(positive(ms) for ms in results[stat]["20000"].values())

    assert results["machine"]["cores"] >= 1 and positive(results["machine"]["memory_mb"])
    for package in ("python", "duckdb", "confluent_kafka", "librdkafka"):
        assert results["versions"][package]
    assert results["settings"]["events"] == [20000]
    assert results["settings"]["worker"]["batch_size"] > 0
    assert results["alerts_settle_seconds"]["20000"] >= 0

    names = {t["name"] for t in results["targets"]}
    assert names == set(TARGET_TEXTS)
    for target in results["targets"]:
        assert isinstance(target["met"], bool)
        assert target["measured"] is None or not math.isnan(target["measured"])
    for text in TARGET_TEXTS.values():
        assert text in result.output, f"target {text!r} missing from the table"
    assert "ingest_eps / bulk_load_ceiling_eps" in result.output
    assert "ingest_eps / naive_eps" in result.output
