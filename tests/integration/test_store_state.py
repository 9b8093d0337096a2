"""The store's derived state (live and as-of) equals the independent oracle, batch by batch."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import orjson
import pytest

import ingest.store
from ingest.contract import Rejected, validate
from ingest.errors import BrokerError
from ingest.readers import open_reader
from ingest.seen_ids import SeenIds
from ingest.store import Batch, DeadLetter, Store, span_window
from tests import oracle
from tests.scenarios import Scenario, contract_scenario, random_scenario
from tests.state_compare import assert_same_rows, store_rows

FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def load(store: Store, scenario: Scenario, seed: int, now: dt.datetime) -> tuple[int, int, int]:
    """Feed the scenario's messages to the store in random batch sizes, like the worker does."""
    rng = random.Random(seed)
    messages = list(enumerate(scenario.messages))
    accepted = duplicates = rejected = 0
    i = 0
    while i < len(messages):
        size = rng.randint(1, 40)
        batch = Batch()
        seen: set[str] = set()
        for offset, (family, key, value) in messages[i : i + size]:
            topic = "shipment-events" if family == "shipments" else "inventory-events"
            batch.messages += 1
            batch.next_offsets[(topic, 0)] = offset + 1
            try:
                event = validate(family, value)
            except Rejected as e:
                batch.dead_letters.append(
                    DeadLetter(topic, 0, offset, e.reason, key.encode(), value)
                )
                continue
            if event.event_id in seen:
                batch.in_batch_duplicates += 1
                continue
            seen.add(event.event_id)
            batch.add(event, topic, 0, offset)
        result = store.apply_batch(batch, now)
        accepted += result.accepted
        duplicates += result.duplicates
        rejected += result.rejected
        i += size
    return accepted, duplicates, rejected


@pytest.mark.parametrize(
    "scenario",
    [contract_scenario(7), contract_scenario(8), random_scenario(1), random_scenario(2)],
    ids=["contract-7", "contract-8", "random-1", "random-2"],
)
@pytest.mark.parametrize("probe_max", [2000, 0], ids=["index-probe", "on-conflict"])
def test_as_of_state_matches_oracle(
    tmp_path: Path, scenario: Scenario, probe_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of skipping stored ids (probing the key's index for small batches, ON CONFLICT
    for large ones) keep exactly the new events."""
    monkeypatch.setattr(ingest.store, "INDEX_PROBE_MAX_EVENTS", probe_max)
    store = Store(tmp_path / "t.duckdb")
    accepted, duplicates, rejected = load(store, scenario, seed=3, now=FAR_FUTURE)
    assert rejected == len(scenario.rejected)
    assert duplicates == scenario.duplicates
    assert accepted + duplicates + rejected == len(scenario.messages)
    con = store.con
    # No reference data loaded here: every reference is unknown, flagged once and counted.
    flagged, counted = con.execute(
        "SELECT (SELECT count(*) FROM data_quality_issues), unknown_references FROM ingest_stats"
    ).fetchone()
    assert flagged == counted > 0
    for t in scenario.as_of_times:
        got = store_rows(con, "shipments", t)
        assert_same_rows(got, oracle.derive_shipments(scenario.accepted, t), f"shipments at {t}")
        got = store_rows(con, "inventory", t)
        assert_same_rows(got, oracle.derive_inventory(scenario.accepted, t), f"inventory at {t}")
        got = store_rows(con, "in-transit", t)
        assert_same_rows(got, oracle.derive_in_transit(scenario.accepted, t), f"in-transit at {t}")
    store.close()


@pytest.mark.parametrize("seed", [11, 12])
def test_live_state_equals_as_of_now(tmp_path: Path, seed: int) -> None:
    """The incrementally folded live views agree with the as-of computation at the same T."""
    scenario = random_scenario(seed)
    store = Store(tmp_path / "t.duckdb")
    # Everything in these scenarios lies in the past of the real clock.
    load(store, scenario, seed=seed, now=dt.datetime.now(dt.UTC))
    con = store.con
    t = con.execute("SELECT now()").fetchone()[0]
    for dataset in ("shipments", "inventory", "in-transit"):
        live = store_rows(con, dataset, None)
        asof = store_rows(con, dataset, t)
        assert_same_rows(live, asof, f"live {dataset}", ignore=("delay_minutes", "is_late"))
    store.close()


def test_future_events_wait_for_their_time(tmp_path: Path) -> None:
    """An event stamped after the batch's clock joins the live state only once its time comes."""
    scenario = random_scenario(5)
    events = sorted(scenario.accepted, key=lambda e: oracle.parse_instant(e["occurred_at"]))
    middle = oracle.parse_instant(events[len(events) // 2]["occurred_at"])
    store = Store(tmp_path / "t.duckdb")
    load(store, scenario, seed=5, now=middle)
    live = store_rows(store.con, "shipments", None)
    expected = oracle.derive_shipments(scenario.accepted, middle)
    assert_same_rows(live, expected, "live before", ignore=("delay_minutes", "is_late"))
    assert store.fold_due_future_events(FAR_FUTURE)  # the clock moved on, no new messages
    assert not store.fold_due_future_events(FAR_FUTURE)
    live = store_rows(store.con, "shipments", None)
    expected = oracle.derive_shipments(scenario.accepted, FAR_FUTURE)
    assert_same_rows(live, expected, "live after", ignore=("delay_minutes", "is_late"))
    store.close()


def test_file_reader_sees_what_the_store_wrote(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    store = Store(path)
    load(store, random_scenario(3), seed=1, now=FAR_FUTURE)
    (count,) = store.con.execute("SELECT count(*) FROM events").fetchone()
    store.checkpoint()
    store.close()
    reader = open_reader(path)
    assert reader.query("SELECT count(*) AS n FROM events").column("n")[0].as_py() == count
    reader.close()


@pytest.mark.parametrize(
    "scenario",
    [contract_scenario(7), random_scenario(5), random_scenario(6)],
    ids=["contract-7", "random-5", "random-6"],
)
def test_as_of_with_events_still_waiting_matches_oracle(tmp_path: Path, scenario: Scenario) -> None:
    """As-of reads settled shipments from the live state, recomputes only those with events on
    both sides of T, and merges events still waiting for their time: all three paths agree
    with the oracle, before, around and after the store's clock."""
    instants = sorted(oracle.parse_instant(e["occurred_at"]) for e in scenario.accepted)
    clock = instants[len(instants) // 2]
    store = Store(tmp_path / "t.duckdb")
    load(store, scenario, seed=9, now=clock)
    con = store.con
    (waiting,) = con.execute("SELECT count(*) FROM future_events").fetchone()
    assert waiting > 0  # the merge path is exercised
    second = dt.timedelta(seconds=1)
    times = [*scenario.as_of_times, clock - second, clock, clock + second, instants[-1], FAR_FUTURE]
    for t in times:
        got = store_rows(con, "shipments", t)
        assert_same_rows(got, oracle.derive_shipments(scenario.accepted, t), f"shipments at {t}")
        got = store_rows(con, "in-transit", t)
        assert_same_rows(got, oracle.derive_in_transit(scenario.accepted, t), f"in-transit at {t}")
    # The look-back window covers the longest span between a shipment's folded events.
    (span, window_span) = con.execute(
        "SELECT max(epoch(last_event_at) - epoch(first_event_at)), "
        "(SELECT \"value\"::DOUBLE FROM settings WHERE name = 'shipment_span_seconds') "
        "FROM shipment_state"
    ).fetchone()
    assert span_window(window_span) >= span
    store.close()


def test_as_of_copes_with_a_shipment_spanning_the_whole_calendar(tmp_path: Path) -> None:
    """Timestamps from year 1 to 9999 are valid: the look-back window widens to ~10,000 years
    and as-of queries still run and see the right positions."""
    store = Store(tmp_path / "t.duckdb")
    batch = Batch()
    for offset, (event_id, instant, lat) in enumerate(
        [("e1", "0001-01-01T00:00:00Z", 1.0), ("e2", "9999-12-31T23:59:59Z", 2.0)]
    ):
        value = orjson.dumps(
            {"schema_version": 1, "event_id": event_id, "event_type": "shipment.position",
             "occurred_at": instant, "source": "t", "shipment_id": "S", "lat": lat, "lon": 0}
        )  # fmt: skip
        batch.add(validate("shipments", value), "shipment-events", 0, offset)
    store.apply_batch(batch, FAR_FUTURE.replace(year=9999, month=12, day=31, hour=23, minute=59))
    for year, lat in ((1, 1.0), (5000, 1.0), (9999, 2.0)):
        t = f"TIMESTAMPTZ '{year:04d}-12-31 23:59:59.5+00'"
        (got,) = store.con.execute(f"SELECT last_lat FROM shipments_asof({t}, 60)").fetchone()
        assert got == lat
    store.close()


def test_a_checkpoint_waits_for_other_transactions(tmp_path: Path) -> None:
    """Another connection to the database may hold a write transaction when the worker
    checkpoints (it crashed a worker once): the checkpoint is postponed, the worker goes on."""
    store = Store(tmp_path / "t.duckdb")
    other = store.cursor()
    other.execute("BEGIN")
    other.execute("UPDATE ingest_stats SET messages = messages WHERE id = 1")
    assert store.checkpoint() is False
    other.execute("ROLLBACK")
    other.close()
    assert store.checkpoint() is True
    store.close()


def test_an_id_the_filter_missed_is_still_stored_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The filter of stored ids only speeds up the duplicate check: were it to miss a stored id,
    the key refuses the plain INSERT and the batch is stored again with DuckDB checking each id."""
    scenario = random_scenario(21)
    store = Store(tmp_path / "t.duckdb")
    accepted, duplicates, _ = load(store, scenario, seed=5, now=FAR_FUTURE)
    assert store._seen is not None and store._seen.count >= accepted

    store._seen = SeenIds(expected=10)  # forgets every stored id: all of them look new
    again, duplicates_again, _ = load(store, scenario, seed=6, now=FAR_FUTURE)
    assert again == 0
    assert duplicates_again == accepted + duplicates
    (events,) = store.con.execute("SELECT count(*) FROM events").fetchone()
    assert events == accepted
    assert "storing the batch exactly" in caplog.text
    assert store._seen is not None and store._seen.count >= accepted  # built anew from the store
    store.close()


def test_a_batch_is_not_stored_when_its_dead_letters_fail(tmp_path: Path) -> None:
    """The worker waits for the batch's dead letters just before COMMIT: if that fails,
    nothing of the batch is stored, and the same batch stores whole afterwards."""
    scenario = random_scenario(23)
    store = Store(tmp_path / "t.duckdb")

    def broker_down() -> None:
        raise BrokerError("1 message(s) not delivered")

    batch = Batch()
    for offset, (family, _key, value) in enumerate(scenario.messages[:30]):
        try:
            batch.add(validate(family, value), f"{family}-events", 0, offset)
        except Rejected:
            continue
        batch.next_offsets[(f"{family}-events", 0)] = offset + 1
    with pytest.raises(BrokerError):
        store.apply_batch(batch, FAR_FUTURE, before_commit=broker_down)
    counts = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM kafka_offsets)"
    assert store.con.execute(counts).fetchone() == (0, 0)
    assert store.apply_batch(batch, FAR_FUTURE).accepted == len(batch.events)
    assert store.con.execute(counts).fetchone() == (len(batch.events), len(batch.next_offsets))
    store.close()
