"""Independent pure-Python model of the contract's derived state and validation (the test oracle).

Written straight from /work/shared/contract/EVENTS.md ("Validation details", "Derived state",
"Exports") and the decisions listed below, without looking at the production SQL, so that
integration tests can compute expected exports independently. Clarity over speed: every
function recomputes from the raw events.

Decisions where the contract is silent (the production code implements the same):
1. "Latest" selections (created, eta_updated, delivered, position, inventory.counted) break
   ties in `occurred_at` by the greater `event_id` (Python string comparison). Earliest
   selections (departed, arrived, delivered time, cancelled) only need the time.
2. `eta`: the latest `eta_updated`; if its `occurred_at` >= the latest `created`'s (or there is
   no `created`) it is the eta, otherwise the plan's `planned_arrival` (null without a plan).
3. The stock return of a cancelled shipment happens at max(effective departure, EARLIEST
   `cancelled`).
4. Stock movements use the plan as of T; the delivery goes to that plan's destination, with the
   latest `delivered` event's lines (summed per SKU) at the EARLIEST delivered time.
5. Inventory rows: every (site, sku) with a count, an adjustment or a shipment movement line
   (a delivered line of quantity 0 included) at or before T. Not clamped.
6. in_transit lines with the same SKU in one plan are summed; only rows > 0.
7. planned_quantity / delivered_quantity are sums of the lines; damaged tires never count.
8. delay_minutes as in the contract, null without planned_arrival or when CANCELLED;
   is_late is strict (> tolerance).
9. Last position: any shipment event at or before T carrying lat/lon, latest wins.
10. A shipment exists at T when any of its accepted events is at or before T.
Helper-only decisions (dashboard metrics, see `on_time_rate` and `otif`):
11. A period selects shipments by their plan's `planned_arrival` in [period_start, period_end);
    shipments without a plan (no `planned_arrival`) are never counted.
12. OTIF has the on-time rate's denominator; its numerator is the DELIVERED shipments that
    arrived within tolerance and were delivered in full.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SHIPMENT_COLUMNS = (
    "shipment_id",
    "status",
    "origin_site_id",
    "destination_site_id",
    "carrier_id",
    "mode",
    "planned_departure",
    "planned_arrival",
    "departed_at",
    "arrived_at",
    "eta",
    "last_lat",
    "last_lon",
    "last_position_at",
    "delay_minutes",
    "is_late",
    "planned_quantity",
    "delivered_quantity",
)
INVENTORY_COLUMNS = ("site_id", "sku", "on_hand")
IN_TRANSIT_COLUMNS = ("origin_site_id", "destination_site_id", "sku", "in_transit")

DELIVERED = "DELIVERED"
CANCELLED = "CANCELLED"
ARRIVED = "ARRIVED"
IN_TRANSIT = "IN_TRANSIT"
PLANNED = "PLANNED"


# --------------------------------------------------------------------------- instants


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp (with offset) as an aware UTC datetime."""
    # RFC 3339 allows lower-case "t" and "z"; fromisoformat does not.
    parsed = datetime.fromisoformat(text.upper())
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return parsed.astimezone(UTC)


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return instant.astimezone(UTC)


def _minutes(delta: timedelta) -> float:
    # Exact integer microseconds divided once: the correctly rounded float.
    return (delta // timedelta(microseconds=1)) / 60_000_000


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class _Event:
    event_id: str
    event_type: str
    at: datetime
    body: dict[str, Any]

    @property
    def order_key(self) -> tuple[datetime, str]:
        """Key of "latest" selections: time, then the greater event_id (decision 1)."""
        return (self.at, self.event_id)


def _visible_events(events: Iterable[dict[str, Any]], as_of: datetime) -> list[_Event]:
    """The first event seen per event_id, keeping those with occurred_at <= as_of."""
    seen: set[str] = set()
    visible: list[_Event] = []
    for body in events:
        event_id = body["event_id"]
        if event_id in seen:
            continue  # a duplicate changes nothing
        seen.add(event_id)
        at = parse_instant(body["occurred_at"])
        if at <= as_of:
            visible.append(_Event(event_id, body["event_type"], at, body))
    return visible


def _latest(events: list[_Event]) -> _Event | None:
    return max(events, key=lambda e: e.order_key, default=None)


def _earliest_time(events: list[_Event]) -> datetime | None:
    return min((e.at for e in events), default=None)


def _lines_by_sku(lines: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line["sku"]] += line["quantity"]
    return dict(totals)


def _optional_instant(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    return None if value is None else parse_instant(value)


# --------------------------------------------------------------------------- shipments


@dataclass
class _Shipment:
    """Everything derived about one shipment at T."""

    shipment_id: str
    status: str | None
    plan: dict[str, Any] | None
    plan_lines: dict[str, int] | None
    departed_at: datetime | None
    arrived_at: datetime | None
    delivered_at: datetime | None
    delivered_lines: dict[str, int] | None
    cancelled_at: datetime | None
    eta: datetime | None
    position: _Event | None
    planned_arrival: datetime | None
    planned_departure: datetime | None

    @property
    def effective_departure(self) -> datetime | None:
        """departed_at, else arrived_at (itself falling back to the earliest delivered)."""
        return self.departed_at if self.departed_at is not None else self.arrived_at


def _shipment_at(shipment_id: str, events: list[_Event]) -> _Shipment:
    by_type: dict[str, list[_Event]] = defaultdict(list)
    for event in events:
        by_type[event.event_type].append(event)

    created = _latest(by_type["shipment.created"])
    plan = created.body if created is not None else None

    departed_at = _earliest_time(by_type["shipment.departed"])
    delivered_at = _earliest_time(by_type["shipment.delivered"])
    arrived_at = _earliest_time(by_type["shipment.arrived"])
    if arrived_at is None:
        arrived_at = delivered_at
    cancelled_at = _earliest_time(by_type["shipment.cancelled"])
    latest_delivered = _latest(by_type["shipment.delivered"])

    if by_type["shipment.delivered"]:
        status: str | None = DELIVERED
    elif by_type["shipment.cancelled"]:
        status = CANCELLED
    elif by_type["shipment.arrived"]:
        status = ARRIVED
    elif by_type["shipment.departed"]:
        status = IN_TRANSIT
    elif created is not None:
        status = PLANNED
    else:
        status = None

    planned_arrival = _optional_instant(plan, "planned_arrival") if plan else None
    planned_departure = _optional_instant(plan, "planned_departure") if plan else None

    eta_event = _latest(by_type["shipment.eta_updated"])
    if eta_event is not None and (created is None or eta_event.at >= created.at):
        eta: datetime | None = parse_instant(eta_event.body["eta"])
    else:
        eta = planned_arrival

    positions = [
        e for e in events if e.body.get("lat") is not None and e.body.get("lon") is not None
    ]

    return _Shipment(
        shipment_id=shipment_id,
        status=status,
        plan=plan,
        plan_lines=_lines_by_sku(plan["lines"]) if plan else None,
        departed_at=departed_at,
        arrived_at=arrived_at,
        delivered_at=delivered_at,
        delivered_lines=(
            _lines_by_sku(latest_delivered.body["lines"]) if latest_delivered else None
        ),
        cancelled_at=cancelled_at,
        eta=eta,
        position=_latest(positions),
        planned_arrival=planned_arrival,
        planned_departure=planned_departure,
    )


def _shipments_at(visible: list[_Event]) -> list[_Shipment]:
    per_shipment: dict[str, list[_Event]] = defaultdict(list)
    for event in visible:
        if event.event_type.startswith("shipment."):
            per_shipment[event.body["shipment_id"]].append(event)
    return [_shipment_at(sid, evs) for sid, evs in sorted(per_shipment.items())]


def _delay_minutes(shipment: _Shipment, as_of: datetime) -> float | None:
    if shipment.planned_arrival is None or shipment.status == CANCELLED:
        return None
    if shipment.arrived_at is not None:
        return _minutes(shipment.arrived_at - shipment.planned_arrival)
    # With a plan the eta is never null (it falls back to planned_arrival).
    assert shipment.eta is not None
    delay = _minutes(max(shipment.eta, as_of) - shipment.planned_arrival)
    return delay if delay > 0 else 0.0


def _shipment_row(shipment: _Shipment, as_of: datetime, tolerance_minutes: float) -> dict:
    plan = shipment.plan or {}
    delay = _delay_minutes(shipment, as_of)
    position = shipment.position
    return {
        "shipment_id": shipment.shipment_id,
        "status": shipment.status,
        "origin_site_id": plan.get("origin_site_id"),
        "destination_site_id": plan.get("destination_site_id"),
        "carrier_id": plan.get("carrier_id"),
        "mode": plan.get("mode"),
        "planned_departure": shipment.planned_departure,
        "planned_arrival": shipment.planned_arrival,
        "departed_at": shipment.departed_at,
        "arrived_at": shipment.arrived_at,
        "eta": shipment.eta,
        "last_lat": float(position.body["lat"]) if position else None,
        "last_lon": float(position.body["lon"]) if position else None,
        "last_position_at": position.at if position else None,
        "delay_minutes": delay,
        "is_late": None if delay is None else delay > tolerance_minutes,
        "planned_quantity": (
            sum(shipment.plan_lines.values()) if shipment.plan_lines is not None else None
        ),
        "delivered_quantity": (
            sum(shipment.delivered_lines.values()) if shipment.delivered_lines is not None else None
        ),
    }


def derive_shipments(
    events: list[dict], as_of: datetime, tolerance_minutes: float = 60.0
) -> list[dict]:
    """Shipment export rows at `as_of`, sorted by shipment_id."""
    as_of = _as_utc(as_of)
    shipments = _shipments_at(_visible_events(events, as_of))
    return [_shipment_row(s, as_of, tolerance_minutes) for s in shipments]


def planned_skus(events: list[dict], as_of: datetime) -> dict[str, set[str]]:
    """The SKUs of each shipment's plan in force at `as_of` (shipments with a plan)."""
    shipments = _shipments_at(_visible_events(events, _as_utc(as_of)))
    return {s.shipment_id: set(s.plan_lines) for s in shipments if s.plan_lines is not None}


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class _StockChange:
    site_id: str
    sku: str
    at: datetime
    quantity: int


def _shipment_movements(shipment: _Shipment) -> list[_StockChange]:
    """Departure, delivery and return lines of one shipment (none without a plan)."""
    if shipment.plan is None or shipment.plan_lines is None:
        return []
    origin = shipment.plan["origin_site_id"]
    destination = shipment.plan["destination_site_id"]
    departure = shipment.effective_departure
    changes: list[_StockChange] = []
    if departure is not None:
        for sku, quantity in shipment.plan_lines.items():
            changes.append(_StockChange(origin, sku, departure, -quantity))
    if shipment.delivered_lines is not None:
        assert shipment.delivered_at is not None
        for sku, quantity in shipment.delivered_lines.items():
            changes.append(_StockChange(destination, sku, shipment.delivered_at, quantity))
    elif shipment.cancelled_at is not None and departure is not None:
        returned_at = max(departure, shipment.cancelled_at)
        for sku, quantity in shipment.plan_lines.items():
            changes.append(_StockChange(origin, sku, returned_at, quantity))
    return changes


def derive_inventory(events: list[dict], as_of: datetime) -> list[dict]:
    """Inventory export rows {site_id, sku, on_hand} at `as_of`, sorted by (site_id, sku)."""
    as_of = _as_utc(as_of)
    visible = _visible_events(events, as_of)

    counts: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    changes: list[_StockChange] = []
    for event in visible:
        if event.event_type == "inventory.counted":
            counts[(event.body["site_id"], event.body["sku"])].append(event)
        elif event.event_type == "inventory.adjusted":
            body = event.body
            changes.append(_StockChange(body["site_id"], body["sku"], event.at, body["delta"]))
    for shipment in _shipments_at(visible):
        changes.extend(_shipment_movements(shipment))

    keys = set(counts) | {(c.site_id, c.sku) for c in changes}
    rows = []
    for site_id, sku in sorted(keys):
        count = _latest(counts.get((site_id, sku), []))
        on_hand = count.body["on_hand"] if count is not None else 0
        for change in changes:
            if (change.site_id, change.sku) != (site_id, sku):
                continue
            # A change at exactly the count's instant is already included in the count.
            if (count is None or change.at > count.at) and change.at <= as_of:
                on_hand += change.quantity
        rows.append({"site_id": site_id, "sku": sku, "on_hand": on_hand})
    return rows


def derive_in_transit(events: list[dict], as_of: datetime) -> list[dict]:
    """In-transit export rows at `as_of` (only quantities > 0), sorted by the key columns."""
    as_of = _as_utc(as_of)
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for shipment in _shipments_at(_visible_events(events, as_of)):
        if shipment.plan is None or shipment.plan_lines is None:
            continue
        if shipment.effective_departure is None:
            continue
        if shipment.delivered_at is not None or shipment.cancelled_at is not None:
            continue
        for sku, quantity in shipment.plan_lines.items():
            key = (shipment.plan["origin_site_id"], shipment.plan["destination_site_id"], sku)
            totals[key] += quantity
    return [
        {"origin_site_id": o, "destination_site_id": d, "sku": s, "in_transit": q}
        for (o, d, s), q in sorted(totals.items())
        if q > 0
    ]


# --------------------------------------------------------------------------- dashboard metrics


@dataclass
class _RateCounts:
    arrived: int = 0
    on_time: int = 0
    overdue_open: int = 0
    otif: int = 0

    @property
    def denominator(self) -> int:
        return self.arrived + self.overdue_open


def _in_full(shipment: _Shipment) -> bool:
    """Every planned SKU's delivered (good-condition) quantity is at least the planned one."""
    if shipment.plan_lines is None or shipment.delivered_lines is None:
        return False
    return all(
        shipment.delivered_lines.get(sku, 0) >= quantity
        for sku, quantity in shipment.plan_lines.items()
    )


def _rate_counts(
    events: list[dict],
    as_of: datetime,
    tolerance_minutes: float,
    period_start: datetime | None,
    period_end: datetime | None,
) -> _RateCounts:
    as_of = _as_utc(as_of)
    start = _as_utc(period_start) if period_start is not None else None
    end = _as_utc(period_end) if period_end is not None else None
    counts = _RateCounts()
    for shipment in _shipments_at(_visible_events(events, as_of)):
        if shipment.status == CANCELLED or shipment.planned_arrival is None:
            continue
        if start is not None and shipment.planned_arrival < start:
            continue
        if end is not None and shipment.planned_arrival >= end:
            continue
        if shipment.arrived_at is not None:
            counts.arrived += 1
            delay = _delay_minutes(shipment, as_of)
            assert delay is not None
            if delay <= tolerance_minutes:
                counts.on_time += 1
                if shipment.status == DELIVERED and _in_full(shipment):
                    counts.otif += 1
        elif shipment.planned_arrival + timedelta(minutes=tolerance_minutes) < as_of:
            counts.overdue_open += 1
    return counts


def on_time_rate(
    events: list[dict],
    as_of: datetime,
    tolerance_minutes: float = 60.0,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> float | None:
    """Arrived within tolerance / (arrived + open with planned_arrival + tolerance < T).

    Cancelled shipments (status CANCELLED at T) are excluded. With a period, only shipments
    whose plan's planned_arrival is in [period_start, period_end) count (decision 11).
    None when the denominator is zero.
    """
    counts = _rate_counts(events, as_of, tolerance_minutes, period_start, period_end)
    return counts.on_time / counts.denominator if counts.denominator else None


def otif(
    events: list[dict],
    as_of: datetime,
    tolerance_minutes: float = 60.0,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> float | None:
    """On time and in full over the on-time rate's denominator (decision 12).

    Numerator: DELIVERED shipments with delay_minutes <= tolerance whose latest delivered
    lines reach the planned quantity for every planned SKU. An arrived shipment not yet
    delivered is in the denominator but not (yet) in full. None when the denominator is zero.
    """
    counts = _rate_counts(events, as_of, tolerance_minutes, period_start, period_end)
    return counts.otif / counts.denominator if counts.denominator else None


# --------------------------------------------------------------------------- validation

SHIPMENT_FAMILY = "shipments"
INVENTORY_FAMILY = "inventory"

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
MODES = {"road", "rail", "sea"}
EXCEPTION_CODES = {"TRAFFIC", "WEATHER", "BREAKDOWN", "CUSTOMS", "STRIKE", "DAMAGE", "OTHER"}
SEVERITIES = {"info", "warning", "critical"}
ADJUSTMENT_REASONS = {"produced", "sold", "scrapped", "correction"}
_EVENT_TYPES = {
    "shipment.created",
    "shipment.departed",
    "shipment.position",
    "shipment.eta_updated",
    "shipment.exception",
    "shipment.arrived",
    "shipment.delivered",
    "shipment.cancelled",
    "inventory.counted",
    "inventory.adjusted",
}


class _Invalid(Exception):
    pass


def _present(obj: dict[str, Any], name: str) -> bool:
    return obj.get(name) is not None  # a field set to null counts as absent


def _need(obj: dict[str, Any], name: str) -> Any:
    if not _present(obj, name):
        raise _Invalid(f"missing {name}")
    return obj[name]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_id(obj: dict[str, Any], name: str) -> None:
    value = _need(obj, name)
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise _Invalid(f"bad id {name}")


def _check_instant(obj: dict[str, Any], name: str) -> None:
    value = _need(obj, name)
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise _Invalid(f"bad timestamp {name}")
    try:
        parse_instant(value)
    except ValueError as e:
        raise _Invalid(f"bad timestamp {name}") from e


def _check_int(obj: dict[str, Any], name: str, minimum: int | None, required: bool) -> None:
    if not _present(obj, name):
        if required:
            raise _Invalid(f"missing {name}")
        return
    value = obj[name]
    if not _is_int(value) or (minimum is not None and value < minimum):
        raise _Invalid(f"bad integer {name}")


def _check_number(obj: dict[str, Any], name: str, low: float, high: float | None) -> None:
    value = obj[name]
    if not _is_number(value) or value < low or (high is not None and value > high):
        raise _Invalid(f"bad number {name}")


def _check_enum(obj: dict[str, Any], name: str, allowed: set[str]) -> None:
    value = _need(obj, name)
    if not isinstance(value, str) or value not in allowed:
        raise _Invalid(f"bad {name}")


def _check_lines(obj: dict[str, Any], minimum_quantity: int, non_empty: bool) -> None:
    lines = _need(obj, "lines")
    if not isinstance(lines, list) or (non_empty and not lines):
        raise _Invalid("bad lines")
    for line in lines:
        if not isinstance(line, dict):
            raise _Invalid("bad line")
        _check_id(line, "sku")
        _check_int(line, "quantity", minimum_quantity, required=True)


def _check_event(family: str, event: Any) -> None:
    if not isinstance(event, dict):
        raise _Invalid("not an object")
    _check_id(event, "event_id")
    event_type = _need(event, "event_type")
    if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
        raise _Invalid("unknown event_type")
    version = _need(event, "schema_version")
    if not _is_int(version) or version < 1:
        raise _Invalid("bad schema_version")
    if version > 1:
        raise _Invalid("unsupported schema_version")
    _check_instant(event, "occurred_at")
    if not isinstance(_need(event, "source"), str):
        raise _Invalid("bad source")
    expected_family = SHIPMENT_FAMILY if event_type.startswith("shipment.") else INVENTORY_FAMILY
    if family != expected_family:
        raise _Invalid("wrong family")

    if family == INVENTORY_FAMILY:
        _check_id(event, "site_id")
        _check_id(event, "sku")
        if event_type == "inventory.counted":
            _check_int(event, "on_hand", 0, required=True)
        else:
            _check_int(event, "delta", None, required=True)
            if event["delta"] == 0:
                raise _Invalid("delta 0")
            _check_enum(event, "reason", ADJUSTMENT_REASONS)
        return

    _check_id(event, "shipment_id")
    if _present(event, "lat") != _present(event, "lon"):
        raise _Invalid("lat without lon")
    if event_type == "shipment.position":
        _need(event, "lat")
    if _present(event, "lat"):
        _check_number(event, "lat", -90, 90)
        _check_number(event, "lon", -180, 180)
    # The type of the optional `reason` / `message` texts is not stated: not checked.
    if event_type == "shipment.created":
        for name in ("origin_site_id", "destination_site_id", "carrier_id"):
            _check_id(event, name)
        _check_enum(event, "mode", MODES)
        _check_instant(event, "planned_departure")
        _check_instant(event, "planned_arrival")
        _check_lines(event, 1, non_empty=True)
    elif event_type == "shipment.position":
        if _present(event, "speed_kmh"):
            _check_number(event, "speed_kmh", 0, None)
        if _present(event, "heading_deg"):
            _check_number(event, "heading_deg", 0, 360)
    elif event_type == "shipment.eta_updated":
        _check_instant(event, "eta")
    elif event_type == "shipment.exception":
        _check_enum(event, "code", EXCEPTION_CODES)
        _check_enum(event, "severity", SEVERITIES)
        _check_int(event, "estimated_delay_minutes", 0, required=False)
    elif event_type == "shipment.delivered":
        # Whether an empty delivered `lines` list is valid is not stated; accepted here.
        _check_lines(event, 0, non_empty=False)
        _check_int(event, "damaged_quantity", 0, required=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def contract_violation(family: str, value: bytes) -> str | None:
    """Why a message on `family` ("shipments" or "inventory") must be rejected, or None."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    try:
        event = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return "invalid JSON"
    try:
        _check_event(family, event)
    except _Invalid as e:
        return str(e)
    # Numbers like 1e999 parse to inf; they are not representable values either.
    if any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(event)):
        return "non-finite number"
    return None


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
