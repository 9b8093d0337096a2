"""A dashboard test database: a seeded simulation of the reference network, stored without Kafka.

Shared by the dashboard's AppTest (unit) and browser tests. The simulated hours end at the
moment of building, so the live views ("now") see trucks on the road; the on-time tolerance is
scaled like the simulator's durations (60 min / time scale 60 = 1 min), so that some shipments
are late or at risk.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.contract import INVENTORY, SHIPMENTS, Rejected, validate
from ingest.network import DATA_DIR, load_network
from ingest.simulator import SimulationSettings, simulate
from ingest.store import Batch, DeadLetter, Store
from tests import oracle

PARTITIONS = 4
TIME_SCALE = 60.0
TOLERANCE_MINUTES = 60.0 / TIME_SCALE


@dataclass(frozen=True)
class DashboardDb:
    path: Path
    built_at: dt.datetime
    messages: int
    accepted: int
    duplicates: int
    rejected: int
    # Every valid message parsed, duplicates included: the oracle's input.
    events: list[dict[str, Any]]

    def shipments(self, as_of: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The oracle's shipment rows at `as_of` (default: a moment after building)."""
        at = as_of or dt.datetime.now(dt.UTC)
        return oracle.derive_shipments(self.events, at, TOLERANCE_MINUTES)

    def trucks(self, as_of: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Shipments the map draws: on the road (departed, not received) with a position."""
        return [
            row
            for row in self.shipments(as_of)
            if row["status"] in ("IN_TRANSIT", "ARRIVED") and row["last_lat"] is not None
        ]


def build_dashboard_db(
    path: Path, *, seed: int = 11, minutes: float = 12.0, rate: float = 40.0, batch_size: int = 2000
) -> DashboardDb:
    """Simulate `minutes` of wall time ending now and store it as the worker would."""
    built_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    settings = SimulationSettings(
        seed=seed,
        rate=rate,
        time_scale=TIME_SCALE,
        start=built_at - dt.timedelta(minutes=minutes),
        duration_s=minutes * 60,
        duplicate_rate=0.01,
        out_of_order_rate=0.01,
        malformed_rate=0.01,
    )
    offsets: dict[tuple[str, int], int] = {}
    events: list[dict[str, Any]] = []
    totals = {"messages": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
    store = Store(path, on_time_tolerance_minutes=TOLERANCE_MINUTES)
    try:
        store.load_reference(DATA_DIR)
        store.mark_started()
        batch, seen = Batch(), set()
        for message in simulate(settings, load_network()):
            topic = "shipment-events" if message.family == SHIPMENTS else "inventory-events"
            partition = zlib.crc32(message.key.encode()) % PARTITIONS
            offset = offsets.get((topic, partition), 0)
            offsets[(topic, partition)] = offset + 1
            batch.messages += 1
            batch.next_offsets[(topic, partition)] = offset + 1
            try:
                event = validate(message.family, message.value)
            except Rejected as e:
                batch.dead_letters.append(
                    DeadLetter(
                        topic, partition, offset, e.reason, message.key.encode(), message.value
                    )
                )
            else:
                events.append(json.loads(message.value))
                if event.event_id in seen:
                    batch.in_batch_duplicates += 1
                else:
                    seen.add(event.event_id)
                    batch.add(event, topic, partition, offset)
            if batch.messages >= batch_size:
                _apply(store, batch, totals)
                batch, seen = Batch(), set()
        if batch.messages:
            _apply(store, batch, totals)
        store.checkpoint()
    finally:
        store.close()
    return DashboardDb(path, built_at, events=events, **totals)


def _apply(store: Store, batch: Batch, totals: dict[str, int]) -> None:
    result = store.apply_batch(batch, dt.datetime.now(dt.UTC))
    totals["messages"] += batch.messages
    totals["accepted"] += result.accepted
    totals["duplicates"] += result.duplicates
    totals["rejected"] += result.rejected


def store_events(
    path: Path, events: list[dict[str, Any]], *, tolerance_minutes: float = TOLERANCE_MINUTES
) -> None:
    """Store hand-written contract events as the worker would (one batch; all must be valid)."""
    store = Store(path, on_time_tolerance_minutes=tolerance_minutes)
    try:
        store.load_reference(DATA_DIR)
        store.mark_started()
        batch = Batch()
        for offset, event in enumerate(events):
            shipment = str(event["event_type"]).startswith("shipment.")
            topic = "shipment-events" if shipment else "inventory-events"
            parsed = validate(SHIPMENTS if shipment else INVENTORY, json.dumps(event).encode())
            batch.add(parsed, topic, 0, offset)
            batch.messages += 1
            batch.next_offsets[(topic, 0)] = offset + 1
        store.apply_batch(batch, dt.datetime.now(dt.UTC))
        store.checkpoint()
    finally:
        store.close()
