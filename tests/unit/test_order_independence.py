"""Derived state depends on event time only: random arrival orders, duplications and batch cuts
of small event streams, stored through the real Store, all equal a small model of the contract.

The model below is written from ../shared/contract/EVENTS.md alone (plus the README's choice
for ties: the greater event_id wins) and shares nothing with the store or with tests/oracle.py.
To run a thousand permutations quickly, the permutations of one stream are stored side by side
in one in-memory store: each copy's ids carry their own prefix (`p0003.SHP-1`), so copies share
no shipment, site or event, and batch i holds chunk i of every copy (`ingest.chaos`).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest import chaos
from ingest.contract import INVENTORY, SHIPMENTS
from ingest.store import Store
from tests.state_compare import assert_same_rows

STREAMS = 20
PERMUTATIONS_PER_STREAM = 50  # 1,000 in all
TOLERANCE = 60.0
BASE = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
GRID_MINUTES = 30  # event times on a coarse grid: many ties
SITES = ("PLT-1", "DC-1", "DIS-1")
SKUS = ("A", "B", "C")
OFFSETS = (
    dt.timedelta(0),
    dt.timedelta(hours=2),
    dt.timedelta(hours=-5, minutes=-30),
    dt.timedelta(hours=5, minutes=45),
)
Event = dict[str, Any]
Row = dict[str, Any]

# --- streams ------------------------------------------------------------------------------


@dataclass
class Stream:
    """A generated stream: its valid events (for the model) and its messages (for the store)."""

    valid: list[Event]
    messages: list[chaos.Arrival]  # the valid events and a few invalid messages, in a fixed order
    invalid: int


class Builder:
    """Random contract events for a few shipments and the stock at three sites."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.invalid: list[tuple[str, str, Event]] = []
        self._ids: set[str] = set()

    def instant(self) -> dt.datetime:
        t = BASE + dt.timedelta(minutes=self.rng.randrange(GRID_MINUTES))
        if self.rng.random() < 0.1:
            t += dt.timedelta(microseconds=self.rng.randrange(1, 1_000_000))
        return t

    def text(self, t: dt.datetime) -> str:
        """RFC 3339 in a random UTC offset: instants must be compared in UTC."""
        offset = self.rng.choice(OFFSETS)
        local = t.astimezone(dt.timezone(offset)).isoformat()
        return local.replace("+00:00", "Z") if self.rng.random() < 0.5 else local

    def event_id(self) -> str:
        while (new := f"ev-{self.rng.getrandbits(24):06x}") in self._ids:
            pass
        self._ids.add(new)
        return new

    def add(self, event_type: str, **fields: Any) -> Event:
        event = {
            "event_id": self.event_id(), "event_type": event_type, "schema_version": 1,
            "occurred_at": self.text(self.instant()), "source": "test", **fields,
        }  # fmt: skip
        self.events.append(event)
        return event

    def lines(self, low: int, most: int) -> list[dict[str, Any]]:
        # The same SKU may appear twice in one list (its quantities add up).
        return [
            {"sku": self.rng.choice(SKUS), "quantity": self.rng.randint(low, 40)}
            for _ in range(self.rng.randint(1 if low else 0, most))
        ]

    def shipment(self, shipment_id: str) -> None:
        rng = self.rng

        def some(weights: list[int]) -> int:
            return rng.choices(range(len(weights)), weights)[0]

        def ship(event_type: str, **fields: Any) -> None:
            if (
                rng.random() < 0.2 and "lat" not in fields
            ):  # any shipment event may carry a position
                fields |= {
                    "lat": round(rng.uniform(35, 60), 5),
                    "lon": round(rng.uniform(-9, 25), 5),
                }
            self.add(event_type, shipment_id=shipment_id, **fields)

        for _ in range(some([1, 5, 2])):
            origin, destination = rng.sample(SITES, 2)
            departure = self.instant()
            ship(
                "shipment.created", origin_site_id=origin, destination_site_id=destination,
                carrier_id=rng.choice(["CAR-1", "CAR-2"]), mode=rng.choice(["road", "rail", "sea"]),
                planned_departure=self.text(departure),
                planned_arrival=self.text(departure + dt.timedelta(minutes=rng.randint(5, 90))),
                lines=self.lines(1, 3),
            )  # fmt: skip
        for _ in range(some([2, 4, 1])):
            ship("shipment.departed")
        for _ in range(some([2, 2, 2, 1])):
            ship(
                "shipment.position",
                lat=round(rng.uniform(35, 60), 5),
                lon=round(rng.uniform(-9, 25), 5),
                speed_kmh=round(rng.uniform(0, 90), 1),
            )
        for _ in range(some([2, 2, 1])):
            ship("shipment.eta_updated", eta=self.text(self.instant()), reason="traffic")
        for _ in range(some([3, 1])):
            ship("shipment.exception", code="TRAFFIC", severity=rng.choice(["info", "warning"]),
                 estimated_delay_minutes=rng.randint(0, 60))  # fmt: skip
        for _ in range(some([3, 3, 1])):
            ship("shipment.arrived")
        for _ in range(some([3, 3, 1])):
            delivered: dict[str, Any] = {"lines": self.lines(0, 3)}
            if rng.random() < 0.3:
                delivered["damaged_quantity"] = rng.randint(0, 5)
            ship("shipment.delivered", **delivered)
        for _ in range(some([4, 2, 1])):
            ship("shipment.cancelled", reason="customer")

    def stock(self) -> None:
        for site in SITES:
            for sku in SKUS:
                for _ in range(self.rng.choice([0, 0, 1, 2])):
                    self.add("inventory.counted", site_id=site, sku=sku,
                             on_hand=self.rng.randint(0, 200))  # fmt: skip
                for _ in range(self.rng.choice([0, 1, 2])):
                    delta = self.rng.choice([-1, 1]) * self.rng.randint(1, 30)
                    reason = self.rng.choice(["produced", "sold", "scrapped", "correction"])
                    self.add(
                        "inventory.adjusted", site_id=site, sku=sku, delta=delta, reason=reason
                    )

    def broken(self) -> None:
        """Messages the contract rejects: they must be dead-lettered in every arrival order."""
        adjusted = {"event_id": self.event_id(), "event_type": "inventory.adjusted",
                    "schema_version": 1, "occurred_at": "2026-03-02T08:00:00Z", "source": "test",
                    "site_id": SITES[0], "sku": SKUS[0], "delta": 0, "reason": "sold"}  # fmt: skip
        position = {"event_id": self.event_id(), "event_type": "shipment.position",
                    "schema_version": 1, "occurred_at": "2026-03-02T08:00:00", "source": "test",
                    "shipment_id": "SHP-0", "lat": 50.0, "lon": 8.0}  # fmt: skip
        self.invalid += [(INVENTORY, SITES[0], adjusted), (SHIPMENTS, "SHP-0", position)]


def build_stream(seed: int) -> Stream:
    builder = Builder(seed)
    for n in range(builder.rng.randint(2, 4)):
        builder.shipment(f"SHP-{n}")
    builder.stock()
    builder.broken()
    messages = [
        chaos.arrival(
            SHIPMENTS if e["event_type"].startswith("shipment.") else INVENTORY,
            e.get("shipment_id") or e["site_id"],
            orjson.dumps(e),
        )
        for e in builder.events
    ] + [chaos.arrival(f, key, orjson.dumps(e)) for f, key, e in builder.invalid]
    return Stream(builder.events, messages, len(builder.invalid))


# --- the model (EVENTS.md, "Derived state") ------------------------------------------------------


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def when(e: Event) -> dt.datetime:
    return instant(e["occurred_at"])


def latest(events: list[Event]) -> Event | None:
    """The latest by occurred_at; at the same instant the greater event_id (README's choice)."""
    return max(events, key=lambda e: (when(e), e["event_id"]), default=None)


def earliest_time(events: list[Event]) -> dt.datetime | None:
    return min((when(e) for e in events), default=None)


def total(lines: list[dict[str, Any]]) -> int:
    return sum(line["quantity"] for line in lines)


@dataclass
class Shipment:
    """One shipment's facts at T, straight from the contract's rules."""

    shipment_id: str
    plan: Event | None
    departed_at: dt.datetime | None
    arrived_first: dt.datetime | None
    delivered_first: dt.datetime | None
    delivery: Event | None  # the latest delivered: its lines count
    cancelled_first: dt.datetime | None
    eta: dt.datetime | None
    position: Event | None

    @property
    def arrived_at(self) -> dt.datetime | None:
        return self.arrived_first or self.delivered_first

    @property
    def effective_departure(self) -> dt.datetime | None:
        return self.departed_at or self.arrived_at

    @property
    def status(self) -> str | None:
        if self.delivered_first:
            return "DELIVERED"
        if self.cancelled_first:
            return "CANCELLED"
        if self.arrived_first:
            return "ARRIVED"
        if self.departed_at:
            return "IN_TRANSIT"
        return "PLANNED" if self.plan else None


def shipments_at(events: list[Event], t: dt.datetime) -> list[Shipment]:
    by_id: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if "shipment_id" in e and when(e) <= t:
            by_id[e["shipment_id"]].append(e)
    found = []
    for shipment_id, own in sorted(by_id.items()):

        def of(kind: str, own: list[Event] = own) -> list[Event]:
            return [e for e in own if e["event_type"] == "shipment." + kind]

        plan = latest(of("created"))
        eta_event = latest(of("eta_updated"))
        if eta_event is not None and (plan is None or when(eta_event) >= when(plan)):
            eta: dt.datetime | None = instant(eta_event["eta"])
        else:
            eta = instant(plan["planned_arrival"]) if plan else None
        found.append(
            Shipment(
                shipment_id=shipment_id,
                plan=plan,
                departed_at=earliest_time(of("departed")),
                arrived_first=earliest_time(of("arrived")),
                delivered_first=earliest_time(of("delivered")),
                delivery=latest(of("delivered")),
                cancelled_first=earliest_time(of("cancelled")),
                eta=eta,
                position=latest([e for e in own if e.get("lat") is not None]),
            )
        )
    return found


def shipment_rows(events: list[Event], t: dt.datetime) -> list[Row]:
    rows = []
    for s in shipments_at(events, t):
        plan = s.plan or {}
        planned_arrival = instant(plan["planned_arrival"]) if s.plan else None
        delay: float | None = None
        if planned_arrival is not None and s.status != "CANCELLED":
            if s.arrived_at is not None:
                delay = (s.arrived_at - planned_arrival) / dt.timedelta(minutes=1)
            else:
                assert s.eta is not None
                delay = max((max(s.eta, t) - planned_arrival) / dt.timedelta(minutes=1), 0.0)
        rows.append({
            "shipment_id": s.shipment_id,
            "status": s.status,
            "origin_site_id": plan.get("origin_site_id"),
            "destination_site_id": plan.get("destination_site_id"),
            "carrier_id": plan.get("carrier_id"),
            "mode": plan.get("mode"),
            "planned_departure": instant(plan["planned_departure"]) if s.plan else None,
            "planned_arrival": planned_arrival,
            "departed_at": s.departed_at,
            "arrived_at": s.arrived_at,
            "eta": s.eta,
            "last_lat": s.position["lat"] if s.position else None,
            "last_lon": s.position["lon"] if s.position else None,
            "last_position_at": when(s.position) if s.position else None,
            "delay_minutes": delay,
            "is_late": None if delay is None else delay > TOLERANCE,
            "planned_quantity": total(plan["lines"]) if s.plan else None,
            "delivered_quantity": total(s.delivery["lines"]) if s.delivery else None,
        })  # fmt: skip
    return rows


def movements(s: Shipment) -> Iterator[tuple[str, str, dt.datetime, int]]:
    """(site, sku, time, delta) of a shipment's stock movements; none without a plan."""
    if s.plan is None:
        return
    origin, destination = s.plan["origin_site_id"], s.plan["destination_site_id"]
    if s.effective_departure is not None:
        for line in s.plan["lines"]:
            yield origin, line["sku"], s.effective_departure, -line["quantity"]
    if s.delivered_first is not None and s.delivery is not None:
        for line in s.delivery["lines"]:
            yield destination, line["sku"], s.delivered_first, line["quantity"]
    left = s.departed_at or s.arrived_first
    if s.cancelled_first is not None and s.delivered_first is None and left is not None:
        for line in s.plan["lines"]:
            yield origin, line["sku"], max(left, s.cancelled_first), line["quantity"]


def inventory_rows(events: list[Event], t: dt.datetime) -> list[Row]:
    known = [e for e in events if when(e) <= t]
    changes = [
        (e["site_id"], e["sku"], when(e), e["delta"])
        for e in known
        if e["event_type"] == "inventory.adjusted"
    ]
    for s in shipments_at(events, t):
        changes.extend(movements(s))
    counts: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in known:
        if e["event_type"] == "inventory.counted":
            counts[(e["site_id"], e["sku"])].append(e)
    rows = []
    for site, sku in sorted(set(counts) | {(c[0], c[1]) for c in changes}):
        count = latest(counts.get((site, sku), []))
        since = when(count) if count else None
        on_hand = (count["on_hand"] if count else 0) + sum(
            delta
            for c_site, c_sku, at, delta in changes
            if (c_site, c_sku) == (site, sku) and (since is None or at > since)
        )
        rows.append({"site_id": site, "sku": sku, "on_hand": on_hand})
    return rows


def in_transit_rows(events: list[Event], t: dt.datetime) -> list[Row]:
    on_road: dict[tuple[str, str, str], int] = defaultdict(int)
    for s in shipments_at(events, t):
        if s.plan is None or s.effective_departure is None:
            continue
        if s.delivered_first is not None or s.cancelled_first is not None:
            continue
        for line in s.plan["lines"]:
            key = (s.plan["origin_site_id"], s.plan["destination_site_id"], line["sku"])
            on_road[key] += line["quantity"]
    return [
        {"origin_site_id": o, "destination_site_id": d, "sku": sku, "in_transit": q}
        for (o, d, sku), q in sorted(on_road.items())
        if q > 0
    ]


MODEL = {"shipments": shipment_rows, "inventory": inventory_rows, "in-transit": in_transit_rows}


# --- the check -------------------------------------------------------------------------------


def test_model_covers_the_interesting_cases() -> None:
    """The streams reach every status, ties, negative and zero stock, re-plans and returns."""
    statuses: set[str | None] = set()
    ties = replans = returns = negative = 0
    end = BASE + dt.timedelta(days=1)
    for seed in range(STREAMS):
        events = build_stream(seed).valid
        statuses |= {s.status for s in shipments_at(events, end)}
        instants = [when(e) for e in events]
        ties += len(instants) - len(set(instants))
        shipments = shipments_at(events, end)
        plans = Counter(e["shipment_id"] for e in events if e["event_type"] == "shipment.created")
        replans += sum(1 for n in plans.values() if n > 1)
        returns += sum(
            1 for s in shipments if s.status == "CANCELLED" and s.effective_departure is not None
        )
        negative += sum(1 for r in inventory_rows(events, end) if r["on_hand"] < 0)
    assert statuses == {None, "PLANNED", "IN_TRANSIT", "ARRIVED", "DELIVERED", "CANCELLED"}
    assert min(ties, replans, returns, negative) > 0, (ties, replans, returns, negative)


@pytest.mark.parametrize("seed", range(STREAMS))
def test_every_arrival_order_gives_the_models_state(seed: int) -> None:
    started = time.perf_counter()
    stream = build_stream(seed)
    assert [m.event_id for m in stream.messages[len(stream.valid) :]] == [None] * stream.invalid
    assert all(m.event_id is not None for m in stream.messages[: len(stream.valid)])

    rng = random.Random(1000 + seed)
    batches = rng.randint(1, 6)
    prefixes = [chaos.copy_prefix(i) for i in range(1, PERMUTATIONS_PER_STREAM + 1)]
    arranged = [
        chaos.rearranged([chaos.namespaced(m, p) for m in stream.messages], rng, 0.15)
        for p in prefixes
    ]
    assert sum(len(a) for a in arranged) > len(prefixes) * len(stream.messages), "no duplicates"
    store = Store(Path(":memory:"))
    try:
        stored = chaos.store_side_by_side(store, [chaos.cut(a, batches, rng) for a in arranged])
        # Every copy's events accepted once, the rest duplicates, the broken messages (the
        # validator agreed with the generator on which they are, above) rejected each time.
        sent = sum(len(a) for a in arranged)
        rejected = sum(m.event_id is None for a in arranged for m in a)
        accepted = len(prefixes) * len(stream.valid)
        assert (stored.messages, stored.accepted, stored.rejected) == (sent, accepted, rejected)
        assert stored.duplicates == sent - accepted - rejected

        instants = sorted({when(e) for e in stream.valid})
        times: list[dt.datetime | None] = [
            None,  # the live views, folded batch by batch
            rng.choice(instants),  # an event's own instant: `<= T` is inclusive
            rng.choice(instants) + dt.timedelta(seconds=30),
            BASE + dt.timedelta(days=1),
        ]
        for t in times:
            for dataset, derive in MODEL.items():
                model_t = dt.datetime.now(dt.UTC) if t is None else t
                skip = chaos.CLOCK_COLUMNS if t is None else ()
                expected = derive(stream.valid, model_t)
                by_copy = chaos.rows_by_namespace(store.con, dataset, t, skip=skip)
                assert set(by_copy) <= set(prefixes)
                for prefix in prefixes:
                    what = f"stream {seed}, copy {prefix} ({batches} batches), {dataset} at {t}"
                    assert_same_rows(by_copy.get(prefix, []), expected, what, ignore=skip)
    finally:
        store.close()
    print(f"stream {seed}: {len(prefixes)} permutations in {time.perf_counter() - started:.1f}s")
