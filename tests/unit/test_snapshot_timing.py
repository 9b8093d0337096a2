"""When the worker snapshots the shipments' state: the snapshot instants and the horizon."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from ingest.store import SNAPSHOT_INTERVAL_S, snapshot_instant_after
from ingest.worker import SNAPSHOT_LAG, build_batch, latest_event_times, snapshot_horizon
from tests.unit.test_worker_batch import Consumed, position

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "instant",
    [
        dt.datetime(2026, 11, 26, 21, 55, 53, 105000, tzinfo=UTC),
        dt.datetime(2026, 11, 26, 21, 55, tzinfo=UTC),  # itself an instant: the next one
        dt.datetime(2026, 11, 26, 21, 54, 59, 999999, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, 58, 1, tzinfo=UTC),  # before the epoch
        dt.datetime(1, 1, 1, 0, 2, tzinfo=UTC),
    ],
)
def test_snapshot_instants_are_the_ones_as_of_queries_look_for(instant: dt.datetime) -> None:
    """The worker takes snapshots where shipment_partials_asof looks for them (time_bucket of
    the instant just before the as-of time)."""
    after = snapshot_instant_after(instant)
    assert instant < after <= instant + dt.timedelta(seconds=SNAPSHOT_INTERVAL_S)
    (bucket,) = duckdb.sql(
        f"SELECT time_bucket(to_seconds({SNAPSHOT_INTERVAL_S}), "
        "$after + INTERVAL 1 SECOND - INTERVAL 1 MICROSECOND)",
        params={"after": after},
    ).fetchone()
    assert bucket == after


def test_the_horizon_waits_for_every_partition_still_being_read() -> None:
    a, b = ("shipments", 0), ("shipments", 1)
    early, late = NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1)
    # Every partition at its end: nothing older will come than what arrives from now on.
    assert snapshot_horizon([], {a: early}, NOW) == NOW - SNAPSHOT_LAG
    assert snapshot_horizon([a, b], {a: early, b: late}, NOW) == early - SNAPSHOT_LAG
    assert snapshot_horizon([b], {a: early, b: late}, NOW) == late - SNAPSHOT_LAG
    assert snapshot_horizon([a, b], {b: late}, NOW) is None  # a has stored nothing yet
    future = NOW + dt.timedelta(days=1)  # a producer whose clock runs ahead
    assert snapshot_horizon([a], {a: future}, NOW) == NOW - SNAPSHOT_LAG


def test_latest_event_times_per_partition() -> None:
    messages = [
        Consumed("shipments", 0, 0, position("e1")),
        Consumed("shipments", 1, 0, position("e2")),
        Consumed("shipments", 0, 1, position("e3").replace(b"08:00:00", b"08:30:00")),
    ]
    batch = build_batch(messages, {"shipments": "shipments"}).prepare()
    assert batch.table is not None
    assert latest_event_times(batch.table) == {
        ("shipments", 0): dt.datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
        ("shipments", 1): dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    }
