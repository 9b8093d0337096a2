"""The worker as a process: kill -9 and SIGTERM mid-ingest lose and double nothing; readers see
the live database over Quack while it writes; the simulator's own stock books agree."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from ingest import chaos
from ingest.broker import free_port, start_broker
from ingest.network import load_network
from ingest.readers import open_reader
from ingest.serve import endpoint_path, token_path
from ingest.simulator import SimulationSettings, simulate
from tests.conftest import REPO, Topics, produce, tiretrack
from tests.state_compare import store_rows

pytestmark = pytest.mark.integration


def simulated(seed: int, seconds: float, rate: float, faults: bool) -> list[tuple[str, str, bytes]]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    settings = SimulationSettings(
        seed=seed, rate=rate, time_scale=60, start=start, duration_s=seconds,
        duplicate_rate=0.02 if faults else 0.0,
        out_of_order_rate=0.02 if faults else 0.0,
        malformed_rate=0.002 if faults else 0.0,
    )  # fmt: skip
    return [(m.family, m.key, m.value) for m in simulate(settings, load_network())]


BATCH = ("--batch-size", "2000")


def start_worker(topics: Topics, broker, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        chaos.worker_command(topics.settings(broker), db, *BATCH, *extra),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_kill_and_sigterm_mid_ingest_lose_and_double_nothing(
    broker, topics: Topics, tmp_path: Path
) -> None:
    """The same procedure as `tiretrack chaos` (ingest/chaos.py), at a small size."""
    messages = simulated(seed=3, seconds=420, rate=400, faults=True)
    kafka = topics.settings(broker)
    produce(kafka, messages)
    total = len(messages)

    reference = tmp_path / "reference.duckdb"
    loop_s = chaos.run_to_end(kafka, reference, tmp_path / "reference.log", *BATCH)
    assert chaos.stored_messages(reference) == total

    # SIGKILLs at random moments, a SIGTERM among them (it finishes the batch in hand and
    # exits 0); after each, the counters agree with the rows and offsets stored.
    interrupted = tmp_path / "interrupted.duckdb"
    signals = [signal.SIGKILL] * 2 + [signal.SIGTERM] + [signal.SIGKILL] * 3
    runs = chaos.interrupt_repeatedly(
        kafka, interrupted, tmp_path / "interrupted.log", signals, random.Random(5),
        total=total, ingest_s=loop_s, extra=BATCH,
    )  # fmt: skip
    print(f"progress after each signal: {[r.after for r in runs]} of {total}")
    assert len(runs) == len(signals) and not any(r.finished_first for r in runs)
    assert any(0 < r.after < total for r in runs if r.signal == "SIGKILL"), runs
    assert all(r.consistent and r.clean for r in runs), runs
    assert [r.exit_code for r in runs if r.signal == "SIGTERM"] == [0]

    chaos.run_to_end(kafka, interrupted, tmp_path / "interrupted.log", *BATCH)
    times = [*chaos.event_time_quantiles(reference), dt.datetime.now(dt.UTC)]
    comparison = chaos.compare_runs(reference, interrupted, times)
    assert comparison.ok, comparison
    assert comparison.counters_a == comparison.counters_b  # messages too: none counted twice


def test_readers_query_the_live_worker_over_quack(broker, topics: Topics, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    port = free_port()
    worker = start_worker(topics, broker, db, "--serve-port", str(port))
    try:
        deadline = time.monotonic() + 60
        while not endpoint_path(db).exists():
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "worker never published its endpoint"
            time.sleep(0.1)
        assert stat.S_IMODE(os.stat(token_path(db)).st_mode) == 0o600
        assert json.loads(endpoint_path(db).read_text())["uri"] == f"quack:127.0.0.1:{port}"

        messages = simulated(seed=9, seconds=300, rate=300, faults=False)
        half = len(messages) // 2
        produce(topics.settings(broker), messages[:half])

        reader = open_reader(db)
        assert reader.remote, "the file is locked by the worker: the reader must use Quack"
        counts = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = reader.query("SELECT count(*) AS n FROM events").column("n")[0].as_py()
            counts.append(n)
            if n >= half:
                break
            time.sleep(0.2)
        assert counts[-1] == half

        # Readers in several threads, each with its own connection, while the worker writes.
        errors: list[BaseException] = []

        def read_loop() -> None:
            try:
                own = open_reader(db)
                for _ in range(15):
                    own.query("SELECT status, count(*) FROM shipments_now GROUP BY status")
                    own.query("SELECT sum(on_hand) FROM inventory_now")
                own.close()
            except BaseException as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=read_loop) for _ in range(4)]
        for thread in threads:
            thread.start()
        produce(topics.settings(broker), messages[half:])
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors

        deadline = time.monotonic() + 60
        while reader.query("SELECT count(*) AS n FROM events").column("n")[0].as_py() < len(
            messages
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        live = reader.query("SELECT count(*) AS n FROM shipments_now").column("n")[0].as_py()
        assert live > 0
        reader.close()

        # An analyst's DuckDB CLI, attached by `tiretrack shell`, runs SQL on the worker.
        shell = subprocess.run(
            [sys.executable, "-m", "ingest", "shell", "--db", str(db)], cwd=REPO, text=True,
            input="SELECT count(*) AS n FROM live.query('SELECT * FROM events');\n",
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert shell.returncode == 0, shell.stderr
        assert str(len(messages)) in shell.stdout

        # `tiretrack export` finds the running worker by itself.
        out = tmp_path / "live.csv"
        result = tiretrack("export", "shipments", "--db", str(db), "--out", str(out))
        assert f"wrote {live} rows" in result.stdout
        manifest = json.loads((tmp_path / "live.csv.manifest.json").read_text())
        assert manifest["source"].startswith("quack:")
        assert sum(sum(p.values()) for p in manifest["offsets"].values()) == len(messages)
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert not endpoint_path(db).exists()
    token = token_path(db).read_text()
    assert token not in err, "the Quack token must never be logged"


def test_second_worker_on_same_database_gets_a_clear_error(
    broker, topics: Topics, tmp_path: Path
) -> None:
    db = tmp_path / "busy.duckdb"
    first = start_worker(topics, broker, db, "--serve-port", str(free_port()))
    try:
        deadline = time.monotonic() + 60
        while not endpoint_path(db).exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        result = tiretrack(
            "ingest",
            *topics.cli_args(broker),
            "--db",
            str(db),
            "--no-serve",
            check=False,
            timeout=60,
        )
        assert result.returncode == 1
        assert "is in use by another process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_derived_stock_reproduces_the_simulators_counts(
    broker, topics: Topics, tmp_path: Path
) -> None:
    """The simulator keeps book stock by the contract's rules and reports it in every count, so
    the store's inventory just before each count must equal the count."""
    messages = simulated(seed=4, seconds=600, rate=150, faults=False)
    produce(topics.settings(broker), messages)
    db = tmp_path / "stock.duckdb"
    tiretrack("ingest", *topics.cli_args(broker), "--db", str(db), "--stop-at-end", "--no-serve")
    con = duckdb.connect(str(db), read_only=True)
    counts = con.execute(
        "SELECT site_id, sku, occurred_at, on_hand FROM events e "
        "WHERE event_type = 'inventory.counted' AND NOT EXISTS (SELECT 1 FROM events o "
        "WHERE o.event_id <> e.event_id AND o.occurred_at = e.occurred_at "
        "AND (o.site_id = e.site_id OR o.shipment_id IS NOT NULL)) "
        "AND occurred_at > (SELECT min(occurred_at) FROM events) + INTERVAL 2 MINUTE"
    ).fetchall()
    assert len(counts) > 50
    for site, sku, at, on_hand in random.Random(1).sample(counts, 40):
        before = at - dt.timedelta(microseconds=1)
        rows = {
            (r["site_id"], r["sku"]): r["on_hand"] for r in store_rows(con, "inventory", before)
        }
        assert rows.get((site, sku), 0) == on_hand, (site, sku, at)
    con.close()


def test_worker_carries_on_after_the_broker_loses_its_data(tmp_path: Path) -> None:
    """The local broker keeps nothing across a restart: the worker notices the offsets going
    back, says so, and ingests the new data instead of waiting for the old positions."""
    port = free_port()
    broker = start_broker("127.0.0.1", port)
    topics = Topics("shipments-reset", "inventory-reset")
    settings = topics.settings(broker)
    db = tmp_path / "reset.duckdb"
    worker = start_worker(topics, broker, db, "--serve-port", str(free_port()))
    try:
        first = simulated(seed=21, seconds=240, rate=100, faults=False)
        produce(settings, first)
        wait_for_accepted(db, len(first))

        broker.kill()
        broker = start_broker("127.0.0.1", port)
        second = simulated(seed=22, seconds=60, rate=100, faults=False)
        produce(settings, second)
        wait_for_accepted(db, len(first) + len(second))
        reader = open_reader(db)
        resets = reader.query("SELECT broker_resets FROM ingest_stats").column(0)[0].as_py()
        reader.close()
        assert resets > 0
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
        broker.stop()
    assert worker.returncode == 0, err
    assert "the broker lost its data" in err


def wait_for_accepted(db: Path, expected: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    accepted = -1
    while time.monotonic() < deadline:
        try:
            reader = open_reader(db)
            accepted = reader.query("SELECT accepted FROM ingest_stats").column(0)[0].as_py()
            reader.close()
        except Exception:  # the worker may still be starting; keep polling until the deadline
            accepted = -1
        if accepted == expected:
            return
        time.sleep(0.3)
    raise AssertionError(f"accepted {accepted}, expected {expected}")


def test_a_backlog_is_stored_in_full_batches(broker, topics: Topics, tmp_path: Path) -> None:
    """Catching up, the worker validates the next batch while it stores one: every batch but
    the last takes a full --batch-size (a drain that stopped early once made 1-message batches
    and ingest crawled at a few messages a second)."""
    messages = simulated(seed=5, seconds=600, rate=100, faults=True)
    produce(topics.settings(broker), messages)
    db = tmp_path / "backlog.duckdb"
    tiretrack(
        "ingest", *topics.cli_args(broker), "--db", str(db), "--stop-at-end", "--no-serve",
        "--batch-size", "500", timeout=120,  # about 10 s when healthy
    )  # fmt: skip
    con = duckdb.connect(str(db), read_only=True)
    (stored, batches) = con.execute("SELECT messages, batches FROM ingest_stats").fetchone()
    con.close()
    assert stored == len(messages) > 5000
    # Full batches, give or take a few cut where the client's fetches ended.
    assert batches <= len(messages) / 500 * 1.5 + 5, (batches, len(messages))
