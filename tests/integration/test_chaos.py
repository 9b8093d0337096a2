"""`tiretrack chaos` end to end at a small size, and its comparisons catch a damaged database.

Speed is never asserted: the command reports its times, tests do not fail on them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from ingest import chaos
from ingest.broker import LocalBroker
from ingest.config import KafkaSettings
from ingest.network import load_network
from ingest.simulator import SimulationSettings, simulate
from tests.conftest import Topics, produce, tiretrack

pytestmark = pytest.mark.integration


def test_chaos_runs_every_check_at_a_small_size(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    result = tiretrack(
        "chaos", "--events", "20000", "--kills", "5", "--sigterms", "1",
        "--fuzz-messages", "500", "--permutations", "20", "--seed", "7", "--skip", "sessions",
        "--json", str(out), "--work-dir", str(tmp_path / "work"), timeout=1200,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["ok"] and report["failures"] == []
    print(result.stdout)

    crashes = report["checks"]["crashes"]
    assert crashes["events"] == 20000
    assert (crashes["kills"], crashes["kills_survived"]) == (5, 5)
    assert (crashes["sigterms"], crashes["sigterms_clean"]) == (1, 1)
    assert (crashes["lost"], crashes["doubled"], crashes["differences"]) == (0, 0, [])
    # Live views (3), shipments/inventory/in-transit at 3 quartiles and now (12), dead letters,
    # offsets.
    assert crashes["parts_compared"] == 17
    assert len(crashes["interruptions"]) == 6
    assert all(r["consistent"] and not r["finished_first"] for r in crashes["interruptions"])
    a, b = crashes["counters_uninterrupted"], crashes["counters_interrupted"]
    assert a == b and a["messages"] == 20000 and a["rejected"] > 0
    assert crashes["dlq_topic_repeats"] >= 0
    assert "kills survived: 5/5, events: 20,000, lost: 0, doubled: 0" in result.stdout

    fuzz = report["checks"]["fuzz"]
    assert fuzz["produced"] == 500 and fuzz["problems"] == []
    assert fuzz["counted"]["rejected"] > 0
    assert fuzz["dlq_topic_messages"] >= fuzz["counted"]["rejected"]
    assert f"fuzzed: 500 messages, rejected {fuzz['counted']['rejected']:,} all " in result.stdout

    permutations = report["checks"]["permutations"]
    assert permutations["identical"] == permutations["permutations"] == 20
    assert permutations["views_compared"] > 0 and permutations["messages_stored"] > 20 * 100
    assert "permutations: 20 identical" in result.stdout


def test_a_failed_check_ends_the_report_with_one_line() -> None:
    results = {
        "checks": {
            "crashes": {"ok": False, "failure": "3 lost and 0 doubled after the kills",
                        "line": "kills survived: 5/5, events: 20,000, lost: 3, doubled: 0",
                        "details": ["SIGTERMs: 1/1 clean exits"], "seconds": 31.0},
            "permutations": {"ok": True, "failure": None, "line": "permutations: 20 identical",
                             "seconds": 2.0},
        },
        "failures": ["crashes: 3 lost and 0 doubled after the kills"],
        "settings": {"work_dir_kept": True, "work_dir": "/tmp/x"},
    }  # fmt: skip
    table = chaos.render_report(results)
    assert "crashes       FAILED  kills survived: 5/5, events: 20,000, lost: 3" in table
    assert "fuzz          skipped" in table
    assert "kept in /tmp/x" in table
    assert chaos.failure_reason(results) == "crashes: 3 lost and 0 doubled after the kills"
    results["failures"].append("permutations: 1 of 20 differ")
    assert chaos.failure_reason(results).endswith("(and 1 more)")
    assert chaos.failure_reason(results | {"failures": []}) is None


def test_a_crashed_worker_is_reported_by_its_error_line() -> None:
    log = (
        "2026-11-26 12:34:45,297 INFO ingest.consumer: assigned t[3] from offset beginning\n"
        "Traceback (most recent call last):\n"
        '  File "/work/main/ingest/store.py", line 456, in _define_partials_asof\n'
        '_duckdb.ParserException: Parser Error: syntax error at or near "1"\n\n'
        "LINE 113: ... INTERVAL 1 SECOND ...\n"
        "                       ^\n"
    )
    assert chaos.error_line(log).startswith("_duckdb.ParserException: Parser Error")
    assert chaos.error_line("error: database x is in use\n") == "error: database x is in use"
    assert chaos.error_line("just a line\n") == "just a line"


def test_chaos_refuses_unknown_checks_to_skip() -> None:
    result = tiretrack("chaos", "--skip", "everything", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# --- the comparisons fail when they should ----------------------------------------------------


def tamper(db: Path, sql: str) -> None:
    """Change one thing in a database at rest, as a bug in the worker could have."""
    con = duckdb.connect(str(db))
    try:
        con.execute(sql)
    finally:
        con.close()


TAMPERING: dict[str, tuple[str, Callable[[chaos.Comparison], bool]]] = {
    "an event lost": (
        "DELETE FROM events WHERE event_id = (SELECT max(event_id) FROM events)",
        lambda c: c.lost == 1 and c.doubled == 0,
    ),
    "a dead letter stored twice": (
        "INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1",
        lambda c: c.doubled == 1 and any(d.startswith("dead-letters") for d in c.differences),
    ),
    "a live state row changed": (
        "UPDATE shipment_state SET departed_at = NULL "
        "WHERE shipment_id = (SELECT min(shipment_id) FROM shipment_state "
        "WHERE departed_at IS NOT NULL)",
        lambda c: any(d.startswith("shipments (live)") for d in c.differences),
    ),
    "a stock count changed": (
        "UPDATE events SET on_hand = on_hand + 1 WHERE event_id = "
        "(SELECT max(event_id) FROM events WHERE event_type = 'inventory.counted')",
        lambda c: any(d.startswith("inventory as of") for d in c.differences),
    ),
    "a counter off by one": (
        "UPDATE ingest_stats SET duplicates = duplicates + 1",
        lambda c: not c.counters_equal,
    ),
}


@dataclass(frozen=True)
class Twins:
    """Two uninterrupted runs over the same input: identical by construction."""

    kafka: KafkaSettings
    a: Path
    b: Path
    times: list[dt.datetime]


@pytest.fixture(scope="module")
def twins(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Twins:
    work = tmp_path_factory.mktemp("twins")
    tag = uuid.uuid4().hex[:8]
    kafka = Topics(f"shipments-twins-{tag}", f"inventory-twins-{tag}").settings(broker)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=300)
    settings = SimulationSettings(
        seed=11, rate=100, start=start, duration_s=300,
        duplicate_rate=0.02, out_of_order_rate=0.02, malformed_rate=0.01,
    )  # fmt: skip
    produce(kafka, [(m.family, m.key, m.value) for m in simulate(settings, load_network())])
    a, b = work / "a.duckdb", work / "b.duckdb"
    for db in (a, b):
        chaos.run_to_end(kafka, db, work / "ingest.log")
    return Twins(kafka, a, b, [*chaos.event_time_quantiles(a), dt.datetime.now(dt.UTC)])


def test_identical_runs_compare_equal(twins: Twins) -> None:
    comparison = chaos.compare_runs(twins.a, twins.b, twins.times)
    assert comparison.ok, comparison
    assert comparison.parts_compared == 17
    assert chaos.db_state(twins.b, twins.kafka) == (chaos.stored_messages(twins.b), True)


@pytest.mark.parametrize("what", list(TAMPERING))
def test_a_damaged_run_is_caught(twins: Twins, tmp_path: Path, what: str) -> None:
    damaged = tmp_path / "damaged.duckdb"
    shutil.copy(twins.b, damaged)
    sql, caught = TAMPERING[what]
    tamper(damaged, sql)
    comparison = chaos.compare_runs(twins.a, damaged, twins.times)
    assert not comparison.ok
    assert caught(comparison), comparison


def test_counters_that_disagree_with_the_rows_are_inconsistent(
    twins: Twins, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.duckdb"
    shutil.copy(twins.b, damaged)
    tamper(damaged, "UPDATE ingest_stats SET messages = messages - 1")
    assert chaos.db_state(damaged, twins.kafka) == (chaos.stored_messages(twins.b) - 1, False)
