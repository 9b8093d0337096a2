"""Seeded builders of hostile event streams: valid lifecycles, duplicates and invalid messages.

A scenario is a list of messages `(family, key, value_bytes)` to produce in order, where family
is "shipments" or "inventory" and the key is the `shipment_id` / `site_id` (except for one
deliberate replay under another key), together with what a correct consumer must make of them:
the accepted events (parsed, duplicates included, in production order), the rejected values
(dead-lettered) and the number of duplicates. Validity is decided by construction here; the
unit tests cross-check it against `tests.oracle.contract_violation`.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ingest.fuzz import ENVELOPE_FIELDS as _ENVELOPE
from ingest.fuzz import REQUIRED_FIELDS as _REQUIRED

SHIPMENTS = "shipments"
INVENTORY = "inventory"
BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)

Message = tuple[str, str, bytes]

_DROP = object()  # marks a field to delete in a variant


@dataclass
class Scenario:
    messages: list[Message]  # in the order to produce
    accepted: list[dict]  # parsed accepted events (for the oracle), duplicates included
    rejected: list[bytes]  # values expected to be rejected (dead-lettered)
    duplicates: int  # valid messages whose event_id was already accepted
    as_of_times: list[datetime]  # interesting T values (ties, just before/after events, end)


@dataclass
class _Message:
    family: str
    key: str
    value: bytes
    valid: bool
    event_id: str | None = None


@dataclass
class _Stream:
    """Collects messages in units; a unit keeps its internal order when units are shuffled."""

    rng: random.Random
    units: list[list[_Message]] = field(default_factory=list)
    late_units: list[list[_Message]] = field(default_factory=list)
    instants: list[datetime] = field(default_factory=list)
    _sequence: int = 0

    def next_id(self, prefix: str = "evt") -> str:
        self._sequence += 1
        return f"{prefix}-{self._sequence:05d}"

    def stamp(self, at: datetime) -> str:
        """`at` as RFC 3339 with a random offset (Z, +00:00, +01:00, -05:00) and precision."""
        assert at.microsecond % 1000 == 0, "scenario instants have millisecond precision"
        offset_minutes, suffix = self.rng.choice(
            [(0, "Z"), (0, "+00:00"), (60, "+01:00"), (-300, "-05:00")]
        )
        local = at.astimezone(timezone(timedelta(minutes=offset_minutes)))
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if local.microsecond or self.rng.random() < 0.3:
            text += f".{local.microsecond // 1000:03d}"
        return text + suffix

    def shipment(
        self,
        event_type: str,
        shipment_id: str,
        at: datetime,
        event_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        event = {
            "event_id": event_id or self.next_id(),
            "event_type": f"shipment.{event_type}",
            "schema_version": 1,
            "occurred_at": self.stamp(at),
            "source": self.rng.choice(["carrier:DHL", "telematics:truck-17", "PLANT-MES"]),
            "shipment_id": shipment_id,
        }
        event.update({k: self._render(v) for k, v in fields.items()})
        return event

    def inventory(
        self,
        event_type: str,
        site_id: str,
        sku: str,
        at: datetime,
        event_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        event = {
            "event_id": event_id or self.next_id(),
            "event_type": f"inventory.{event_type}",
            "schema_version": 1,
            "occurred_at": self.stamp(at),
            "source": self.rng.choice(["WMS-SAP", "PLANT-MES", "WMS-Zürich ✓"]),
            "site_id": site_id,
            "sku": sku,
        }
        event.update(fields)
        return event

    def _render(self, value: Any) -> Any:
        return self.stamp(value) if isinstance(value, datetime) else value

    def valid_message(self, event: dict[str, Any], key: str | None = None) -> _Message:
        family = SHIPMENTS if event["event_type"].startswith("shipment.") else INVENTORY
        self.instants.append(_instant(event["occurred_at"]))
        return _Message(family, key or _key(event), encode(event), True, event["event_id"])

    def add(self, *messages: _Message, late: bool = False) -> None:
        """Add messages as one unit; late units are produced after all the others."""
        (self.late_units if late else self.units).append(list(messages))

    def emit(self, event: dict[str, Any], late: bool = False) -> dict[str, Any]:
        self.add(self.valid_message(event), late=late)
        return event

    def build(self, as_of_times: list[datetime]) -> Scenario:
        units = list(self.units)
        self.rng.shuffle(units)
        ordered = [m for unit in units + self.late_units for m in unit]
        accepted: list[dict] = []
        rejected: list[bytes] = []
        seen: set[str] = set()
        duplicates = 0
        for message in ordered:
            if not message.valid:
                rejected.append(message.value)
                continue
            accepted.append(json.loads(message.value))
            assert message.event_id is not None
            if message.event_id in seen:
                duplicates += 1
            seen.add(message.event_id)
        return Scenario(
            messages=[(m.family, m.key, m.value) for m in ordered],
            accepted=accepted,
            rejected=rejected,
            duplicates=duplicates,
            as_of_times=sorted(set(as_of_times)),
        )


def encode(event: Any) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _key(event: dict[str, Any]) -> str:
    name = "shipment_id" if str(event.get("event_type", "")).startswith("shipment.") else "site_id"
    value = event.get(name)
    return value if isinstance(value, str) and value else "no-key"


def _variant(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    for name, value in changes.items():
        if value is _DROP:
            changed.pop(name, None)
        else:
            changed[name] = value
    return changed


def _line_variant(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    line = changed["lines"][0]
    for name, value in changes.items():
        if value is _DROP:
            line.pop(name, None)
        else:
            line[name] = value
    return changed


def _without_offset(text: str) -> str:
    return _instant(text).strftime("%Y-%m-%dT%H:%M:%S")


def _family_of(event: dict[str, Any]) -> str:
    return SHIPMENTS if event["event_type"].startswith("shipment.") else INVENTORY


# --------------------------------------------------------------------------- invalid messages


def envelope_mutations(event: dict[str, Any]) -> list[tuple[str, str, str, bytes]]:
    """Invalid variants of a valid event, broken in the envelope: (label, family, key, value)."""
    family, key = _family_of(event), _key(event)
    other_family = INVENTORY if family == SHIPMENTS else SHIPMENTS
    text = encode(event)
    out: list[tuple[str, str, str, bytes]] = []

    def add(label: str, value: dict[str, Any] | bytes, on: str = family) -> None:
        out.append((label, on, key, value if isinstance(value, bytes) else encode(value)))

    add("truncated JSON", text[: len(text) // 2])
    add("trailing garbage after the object", text + b" {}")
    add("invalid UTF-8", encode(_variant(event, source="@@")).replace(b"@@", b"\xff\xfe"))
    add("NaN in an unknown extra field", json.dumps({**event, "x_metric": float("nan")}).encode())
    add("Infinity in an unknown extra field", json.dumps({**event, "x_m": float("inf")}).encode())
    for name in _ENVELOPE:
        add(f"missing {name}", _variant(event, **{name: _DROP}))
        add(f"null {name}", _variant(event, **{name: None}))
    for label, version in [
        ('schema_version "1"', "1"),
        ("schema_version 1.0", 1.0),
        ("schema_version true", True),
        ("schema_version 0", 0),
        ("schema_version -1", -1),
        ("schema_version 2 (unsupported)", 2),
        ("schema_version 17 (unsupported)", 17),
    ]:
        add(label, _variant(event, schema_version=version))
    add("event_id of 65 chars", _variant(event, event_id="E" * 65))
    add("empty event_id", _variant(event, event_id=""))
    add("event_id not a string", _variant(event, event_id=12345))
    naive = _without_offset(event["occurred_at"])
    add("occurred_at without offset", _variant(event, occurred_at=naive))
    add("occurred_at date only", _variant(event, occurred_at=event["occurred_at"][:10]))
    add("occurred_at not a date", _variant(event, occurred_at="yesterday"))
    add("occurred_at month 13", _variant(event, occurred_at="2026-13-02T08:00:00Z"))
    add("occurred_at as epoch number", _variant(event, occurred_at=1772438400))
    add("source not a string", _variant(event, source=42))
    family_prefix = event["event_type"].split(".")[0]
    add("unknown event_type", _variant(event, event_type=f"{family_prefix}.teleported"))
    add("event_type without family", _variant(event, event_type=event["event_type"].split(".")[1]))
    add("event_type not a string", _variant(event, event_type=7))
    add("wrong family", text, on=other_family)
    return out


def type_mutations(event: dict[str, Any]) -> list[tuple[str, str, str, bytes]]:
    """Invalid variants of a valid event, broken in its type's own fields."""
    family, key, event_type = _family_of(event), _key(event), event["event_type"]
    out: list[tuple[str, str, str, bytes]] = []

    def add(label: str, value: dict[str, Any]) -> None:
        out.append((f"{event_type}: {label}", family, key, encode(value)))

    for name in _REQUIRED[event_type]:
        add(f"missing {name}", _variant(event, **{name: _DROP}))
        add(f"null {name}", _variant(event, **{name: None}))

    if family == SHIPMENTS:
        add("empty shipment_id", _variant(event, shipment_id=""))
        add("shipment_id of 65 chars", _variant(event, shipment_id="S" * 65))
        add("shipment_id not a string", _variant(event, shipment_id=42))
        add("lat without lon", _variant(event, lat=48.1, lon=_DROP))
        add("lon without lat", _variant(event, lat=_DROP, lon=11.5))
        add("null lat with lon", _variant(event, lat=None, lon=11.5))
        add("lat 90.5", _variant(event, lat=90.5, lon=11.5))
        add("lat -91", _variant(event, lat=-91, lon=11.5))
        add("lon 180.5", _variant(event, lat=48.1, lon=180.5))
        add("lon -181", _variant(event, lat=48.1, lon=-181))
        add('lat "48.1"', _variant(event, lat="48.1", lon=11.5))
        add("lat true", _variant(event, lat=True, lon=11.5))
    else:
        add("empty site_id", _variant(event, site_id=""))
        add("site_id of 65 chars", _variant(event, site_id="W" * 65))
        add("empty sku", _variant(event, sku=""))
        add("sku of 65 chars", _variant(event, sku="K" * 65))
        add("sku not a string", _variant(event, sku=205))

    if event_type == "shipment.created":
        for label, quantity in [
            ("quantity 120.5", 120.5),
            ('quantity "3"', "3"),
            ("quantity true", True),
            ("quantity 3.0", 3.0),
            ("quantity 0", 0),
            ("quantity -2", -2),
        ]:
            add(label, _line_variant(event, quantity=quantity))
        add("line without sku", _line_variant(event, sku=_DROP))
        add("line without quantity", _line_variant(event, quantity=_DROP))
        add("line with null quantity", _line_variant(event, quantity=None))
        add("line sku of 65 chars", _line_variant(event, sku="K" * 65))
        add("line empty sku", _line_variant(event, sku=""))
        add("empty lines", _variant(event, lines=[]))
        add("lines not a list", _variant(event, lines=event["lines"][0]))
        add("line not an object", _variant(event, lines=["TIRE-205"]))
        add("mode air", _variant(event, mode="air"))
        add("mode ROAD", _variant(event, mode="ROAD"))
        add("empty carrier_id", _variant(event, carrier_id=""))
        add("origin_site_id of 65 chars", _variant(event, origin_site_id="O" * 65))
        add(
            "planned_arrival without offset",
            _variant(event, planned_arrival=_without_offset(event["planned_arrival"])),
        )
        add("planned_departure not a date", _variant(event, planned_departure="tomorrow"))
    elif event_type == "shipment.position":
        add("position without lat and lon", _variant(event, lat=_DROP, lon=_DROP))
        add("speed_kmh -1", _variant(event, speed_kmh=-1))
        add('speed_kmh "fast"', _variant(event, speed_kmh="fast"))
        add("heading_deg 361", _variant(event, heading_deg=361))
        add("heading_deg -0.5", _variant(event, heading_deg=-0.5))
    elif event_type == "shipment.eta_updated":
        add("eta without offset", _variant(event, eta=_without_offset(event["eta"])))
        add("eta not a date", _variant(event, eta="soon"))
    elif event_type == "shipment.exception":
        add("code FIRE", _variant(event, code="FIRE"))
        add("severity fatal", _variant(event, severity="fatal"))
        add("estimated_delay_minutes 12.5", _variant(event, estimated_delay_minutes=12.5))
        add("estimated_delay_minutes -1", _variant(event, estimated_delay_minutes=-1))
        add('estimated_delay_minutes "5"', _variant(event, estimated_delay_minutes="5"))
    elif event_type == "shipment.delivered":
        add("quantity -1", _line_variant(event, quantity=-1))
        add("quantity 1.5", _line_variant(event, quantity=1.5))
        add('quantity "3"', _line_variant(event, quantity="3"))
        add("line without sku", _line_variant(event, sku=_DROP))
        add("damaged_quantity -1", _variant(event, damaged_quantity=-1))
        add("damaged_quantity true", _variant(event, damaged_quantity=True))
        add("lines not a list", _variant(event, lines="all of them"))
    elif event_type == "inventory.counted":
        for label, on_hand in [
            ("on_hand 120.5", 120.5),
            ('on_hand "3"', "3"),
            ("on_hand true", True),
            ("on_hand -1", -1),
        ]:
            add(label, _variant(event, on_hand=on_hand))
    elif event_type == "inventory.adjusted":
        for label, delta in [
            ("delta 0", 0),
            ("delta 2.5", 2.5),
            ('delta "3"', "3"),
            ("delta true", True),
        ]:
            add(label, _variant(event, delta=delta))
        add("reason stolen", _variant(event, reason="stolen"))
    return out


_NON_OBJECTS = [
    b"not json at all",
    b"[1, 2, 3]",
    b'"shipment.position"',
    b"42",
    b"null",
    b"true",
    b"{",
]


# --------------------------------------------------------------------------- contract scenario

PLANT, DC1, DC2, GHOST = "PLANT-MUC", "DC-HAM", "DC-LYS", "SITE-NOT-IN-REFERENCE"
A, B, C = "TIRE-205-55R16-SUMMER", "TIRE-225-45R17-WINTER", "TIRE-UNLISTED-X"


def at(minutes: float, ms: int = 0) -> datetime:
    """BASE + minutes (+ milliseconds)."""
    return BASE + timedelta(minutes=minutes, milliseconds=ms)


def _lines(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in pairs]


def contract_scenario(seed: int = 7) -> Scenario:
    """Hand-built edge cases of the contract, shuffled deterministically by `seed`.

    The story (minutes after BASE = 2026-03-02T08:00:00Z) is spelt out case by case below;
    tests/unit/test_oracle.py checks the oracle on most of these cases one at a time.
    """
    s = _Stream(random.Random(seed))

    def created(
        sid: str,
        t: datetime,
        origin: str,
        dest: str,
        lines: list,
        pd: float,
        pa: float,
        event_id: str | None = None,
        mode: str = "road",
        carrier: str = "CARR-DHL",
        **extra: Any,
    ) -> dict[str, Any]:
        return s.shipment(
            "created",
            sid,
            t,
            event_id,
            origin_site_id=origin,
            destination_site_id=dest,
            carrier_id=carrier,
            mode=mode,
            planned_departure=at(pd),
            planned_arrival=at(pa),
            lines=lines,
            **extra,
        )

    # --- inventory
    s.emit(s.inventory("counted", PLANT, A, at(-60), on_hand=500))
    count_b = s.emit(s.inventory("counted", PLANT, B, at(-60), on_hand=300))
    produced = s.emit(s.inventory("adjusted", PLANT, A, at(-30), delta=100, reason="produced"))
    # exact tie between two counts: the greater event_id wins (295)
    s.emit(s.inventory("counted", PLANT, B, at(-30), "cnt-tie-plant-b-1", on_hand=290))
    s.emit(s.inventory("counted", PLANT, B, at(-30), "cnt-tie-plant-b-2", on_hand=295))
    # count at SHP-0001's departure instant: that departure (and this adjustment) are included
    s.emit(s.inventory("counted", PLANT, A, at(60), on_hand=450))
    s.emit(s.inventory("adjusted", PLANT, A, at(60), delta=-5, reason="sold"))
    s.emit(s.inventory("adjusted", PLANT, B, at(45, 500), delta=-1, reason="scrapped"))
    # sold before any count: stock goes negative, not clamped
    s.emit(s.inventory("adjusted", DC1, A, at(10), delta=-20, reason="sold", x_unknown=[1, 2]))
    s.emit(s.inventory("counted", GHOST, C, at(100), on_hand=3))
    # count at SHP-0001's delivery instant, then a correction just after
    s.emit(s.inventory("counted", DC1, A, at(700), on_hand=50))
    s.emit(s.inventory("adjusted", DC1, A, at(701), delta=2, reason="correction"))
    s.emit(s.inventory("counted", DC1, B, at(900), on_hand=40))
    s.emit(s.inventory("counted", DC2, C, at(30), on_hand=0))
    # late: a count from long ago arrives last and must not override the later ones
    s.emit(s.inventory("counted", PLANT, A, at(-600), on_hand=9999), late=True)
    # duplicates: identical bytes, and the same event serialized differently
    s.add(s.valid_message(count_b))
    s.add(
        _Message(
            INVENTORY,
            PLANT,
            json.dumps(produced, indent=1, sort_keys=True).encode(),
            True,
            produced["event_id"],
        )
    )

    # --- SHP-0001: the normal lifecycle; tie of positions at 180; duplicates
    c1 = s.emit(created("SHP-0001", at(0), PLANT, DC1, _lines((A, 10), (B, 5), (A, 3)), 60, 600))
    dep1 = s.emit(s.shipment("departed", "SHP-0001", at(60), lat=48.35, lon=11.78))
    pos1 = s.emit(s.shipment("position", "SHP-0001", at(120), lat=49.5, lon=10.9, speed_kmh=82.5))
    s.emit(s.shipment("position", "SHP-0001", at(180), "pos-0001-180-a", lat=50.1, lon=10.0))
    s.emit(s.shipment("position", "SHP-0001", at(180), "pos-0001-180-b", lat=51.2, lon=9.9))
    s.emit(s.shipment("eta_updated", "SHP-0001", at(200), eta=at(630), reason="traffic"))
    s.emit(s.shipment("exception", "SHP-0001", at(210), code="TRAFFIC", severity="info"))
    s.emit(s.shipment("arrived", "SHP-0001", at(650), lat=53.55, lon=9.99))
    s.emit(
        s.shipment(
            "delivered", "SHP-0001", at(700), lines=_lines((A, 13), (B, 4)), damaged_quantity=1
        )
    )
    s.add(s.valid_message(dep1))  # same partition
    s.add(s.valid_message(pos1, key="replay/SHP-0001"))  # another key: likely another partition
    s.add(s.valid_message(c1), late=True)  # a late duplicate

    # --- SHP-0002: re-plan after departure and after an eta; eta tie at 80; late old plan
    s.emit(created("SHP-0002", at(5), PLANT, DC1, _lines((A, 20)), 30, 300))
    s.emit(s.shipment("departed", "SHP-0002", at(30)))
    s.emit(s.shipment("eta_updated", "SHP-0002", at(40), eta=at(500)))
    s.emit(
        created(
            "SHP-0002",
            at(50),
            PLANT,
            DC2,
            _lines((A, 25), (B, 5)),
            30,
            400,
            mode="rail",
            carrier="CARR-DB",
        )
    )
    s.emit(s.shipment("eta_updated", "SHP-0002", at(80), "eta-0002-80-a", eta=at(420)))
    s.emit(s.shipment("eta_updated", "SHP-0002", at(80), "eta-0002-80-b", eta=at(450)))
    s.emit(created("SHP-0002", at(1), PLANT, GHOST, _lines((C, 1)), 10, 200), late=True)

    # --- SHP-0003: cancelled before departure: no stock moves
    s.emit(created("SHP-0003", at(10), PLANT, DC2, _lines((A, 7)), 60, 500))
    s.emit(s.shipment("cancelled", "SHP-0003", at(20), reason="customer cancelled"))

    # --- SHP-0004: cancelled twice after departure: return at the earliest cancellation (250)
    s.emit(created("SHP-0004", at(0), PLANT, DC2, _lines((B, 30)), 100, 600))
    s.emit(s.shipment("departed", "SHP-0004", at(100)))
    s.emit(s.shipment("cancelled", "SHP-0004", at(250), reason=None))
    s.emit(s.shipment("cancelled", "SHP-0004", at(300), reason="really"))

    # --- SHP-0005: cancelled after delivery: still DELIVERED, no return
    s.emit(created("SHP-0005", at(0), PLANT, DC1, _lines((A, 8)), 100, 450))
    s.emit(s.shipment("departed", "SHP-0005", at(100)))
    s.emit(s.shipment("delivered", "SHP-0005", at(400), lines=_lines((A, 8))))
    s.emit(s.shipment("cancelled", "SHP-0005", at(500)))

    # --- SHP-0006: cancelled in transit (300), then delivered (420): delivery wins from 420
    s.emit(created("SHP-0006", at(0), PLANT, DC1, _lines((B, 6)), 100, 450))
    s.emit(s.shipment("departed", "SHP-0006", at(100)))
    s.emit(s.shipment("cancelled", "SHP-0006", at(300)))
    s.emit(s.shipment("delivered", "SHP-0006", at(420), lines=_lines((B, 6))))

    # --- SHP-POSONLY: only positions (boundary values, integer lat/lon) and an exception
    s.emit(
        s.shipment(
            "position", "SHP-POSONLY", at(30), lat=90, lon=-180, heading_deg=360, speed_kmh=0
        )
    )
    s.emit(s.shipment("position", "SHP-POSONLY", at(90), lat=45, lon=7, heading_deg=0))
    s.emit(
        s.shipment(
            "exception",
            "SHP-POSONLY",
            at(95),
            code="WEATHER",
            severity="warning",
            estimated_delay_minutes=0,
            message="Schnee",
        )
    )

    # --- SHP-0007: delivered without departed/arrived: all at 480
    s.emit(created("SHP-0007", at(0), DC1, GHOST, _lines((C, 6)), 60, 480, mode="sea"))
    s.emit(s.shipment("delivered", "SHP-0007", at(480), lines=_lines((C, 6))))

    # --- SHP-0008: two delivered events: the later quantities at the earlier time
    s.emit(created("SHP-0008", at(0), PLANT, DC2, _lines((A, 10), (B, 10)), 60, 480))
    s.emit(s.shipment("departed", "SHP-0008", at(60)))
    s.emit(s.shipment("arrived", "SHP-0008", at(500)))
    s.emit(s.shipment("delivered", "SHP-0008", at(520), lines=_lines((A, 8), (B, 10))))
    s.emit(s.shipment("delivered", "SHP-0008", at(600), lines=_lines((A, 10), (B, 9))))

    # --- SHP-0009: two delivered events at the same instant: the greater event_id wins
    s.emit(created("SHP-0009", at(0), PLANT, DC2, _lines((A, 5)), 60, 540))
    s.emit(s.shipment("departed", "SHP-0009", at(60)))
    s.emit(s.shipment("delivered", "SHP-0009", at(530), "dlv-0009-530-a", lines=_lines((A, 5))))
    s.emit(
        s.shipment(
            "delivered",
            "SHP-0009",
            at(530),
            "dlv-0009-530-b",
            lines=_lines((A, 4), (C, 0)),
            damaged_quantity=0,
        )
    )

    # --- SHP-0010: arrived without departed, exactly at tolerance (60.0, not late)
    s.emit(created("SHP-0010", at(0), DC2, DC1, _lines((B, 12)), 100, 300))
    s.emit(s.shipment("arrived", "SHP-0010", at(360)))

    # --- SHP-0011: arrived 60 min + 1 ms late (late); SHP-0012: 30 min early
    s.emit(created("SHP-0011", at(0), PLANT, DC1, _lines((A, 1)), 30, 300))
    s.emit(s.shipment("departed", "SHP-0011", at(30)))
    s.emit(s.shipment("arrived", "SHP-0011", at(360, 1)))
    s.emit(created("SHP-0012", at(0), PLANT, DC2, _lines((A, 2)), 30, 300))
    s.emit(s.shipment("departed", "SHP-0012", at(30)))
    s.emit(s.shipment("arrived", "SHP-0012", at(270)))
    s.emit(s.shipment("delivered", "SHP-0012", at(280), lines=_lines((A, 2))))

    # --- SHP-0013: two created at the same instant: the greater event_id wins
    s.emit(created("SHP-0013", at(15), PLANT, DC1, _lines((A, 1)), 50, 100, "crt-0013-15-a"))
    s.emit(created("SHP-0013", at(15), PLANT, DC2, _lines((A, 2)), 60, 200, "crt-0013-15-b"))

    # --- a 64-char shipment_id and a 64-char event_id
    long_id = "SHP-" + "X" * 60
    s.emit(created(long_id, at(0), PLANT, DC1, _lines((B, 1)), 60, 400))
    s.emit(s.shipment("departed", long_id, at(70), "D" * 64))

    # --- SHP-ETAONLY: an eta without a plan
    s.emit(s.shipment("eta_updated", "SHP-ETAONLY", at(100), eta=at(900)))

    # --- SHP-0016: eta at the created instant wins; SHP-0017: eta before created loses
    s.emit(created("SHP-0016", at(20), PLANT, DC1, _lines((A, 1)), 30, 200))
    s.emit(s.shipment("eta_updated", "SHP-0016", at(20), eta=at(260)))
    s.emit(s.shipment("eta_updated", "SHP-0017", at(10), eta=at(999)))
    s.emit(created("SHP-0017", at(20), PLANT, DC1, _lines((A, 1)), 30, 200))

    # --- SHP-0018: cancelled, then re-planned: stays CANCELLED
    s.emit(created("SHP-0018", at(0), PLANT, DC2, _lines((B, 2)), 60, 300))
    s.emit(s.shipment("cancelled", "SHP-0018", at(50)))
    s.emit(created("SHP-0018", at(70), PLANT, DC2, _lines((B, 3)), 90, 320))

    # --- SHP-0019: cancelled at 200, arrived (without departed) at 300: leave and return at 300
    s.emit(created("SHP-0019", at(0), PLANT, DC1, _lines((A, 4)), 60, 400))
    s.emit(s.shipment("cancelled", "SHP-0019", at(200)))
    s.emit(s.shipment("arrived", "SHP-0019", at(300)))

    # --- SHP-0020: departed and a position at the same instant; null lat/lon; late old position
    s.emit(created("SHP-0020", at(0), PLANT, DC1, _lines((B, 1)), 45, 500, x_note=None))
    s.emit(s.shipment("departed", "SHP-0020", at(45), "dep-0020-45", lat=48.0, lon=11.0))
    s.emit(s.shipment("position", "SHP-0020", at(45), "pos-0020-45", lat=49.0, lon=12.0))
    s.emit(s.shipment("arrived", "SHP-0020", at(500), lat=None, lon=None))
    s.emit(s.shipment("position", "SHP-0020", at(-2000), lat=0.0, lon=0.0), late=True)

    # --- SHP-0021: an invalid message first takes an event_id, then the valid one is accepted;
    # an invalid message reusing an accepted event_id afterwards is rejected, not a duplicate
    reused = created("SHP-0021", at(30), PLANT, DC1, _lines((A, 3)), 60, 600, "evt-reuse-0021")
    s.add(
        _Message(SHIPMENTS, "SHP-0021", encode(_variant(reused, schema_version=2)), False),
        s.valid_message(reused),
    )
    dep21 = s.shipment("departed", "SHP-0021", at(90), "evt-reuse-0021-dep")
    s.add(
        s.valid_message(dep21),
        _Message(SHIPMENTS, "SHP-0021", encode(_variant(dep21, lat=91, lon=0)), False),
    )

    # --- invalid messages: templates aimed at real shipments and stock (they must change nothing)
    templates = [
        created("SHP-0002", at(55), PLANT, GHOST, _lines((A, 1), (B, 2)), 60, 1000, "bad-crt"),
        s.shipment("departed", "SHP-0013", at(300), "bad-dep"),
        s.shipment("position", "SHP-0002", at(1500), "bad-pos", lat=47.0, lon=8.0, speed_kmh=5),
        s.shipment("eta_updated", "SHP-0002", at(1500), "bad-eta", eta=at(1600), reason="r"),
        s.shipment(
            "exception",
            "SHP-0002",
            at(1500),
            "bad-exc",
            code="STRIKE",
            severity="critical",
            estimated_delay_minutes=30,
        ),
        s.shipment("arrived", "SHP-0002", at(1500), "bad-arr"),
        s.shipment(
            "delivered",
            "SHP-0002",
            at(1500),
            "bad-dlv",
            lines=_lines((A, 25), (B, 5)),
            damaged_quantity=0,
        ),
        s.shipment("cancelled", "SHP-0002", at(1500), "bad-cnc", reason="x"),
        s.inventory("counted", PLANT, A, at(1500), "bad-cnt", on_hand=1),
        s.inventory("adjusted", PLANT, A, at(1500), "bad-adj", delta=5, reason="produced"),
    ]
    invalid: list[tuple[str, str, str, bytes]] = []
    invalid += envelope_mutations(templates[2])
    invalid += envelope_mutations(templates[8])
    for template in templates:
        invalid += type_mutations(template)
    for value in _NON_OBJECTS:
        invalid.append(("not an object / not JSON", SHIPMENTS, "SHP-0002", value))
    invalid.append(("not an object / not JSON", INVENTORY, PLANT, b"[]"))
    for _label, family, key, value in invalid:
        s.add(_Message(family, key, value, False))

    boundaries = [at(m) for m in (60, 250, 300, 360, 420, 480, 530, 700)] + [at(360, 1)]
    instants = [
        at(m)
        for m in (
            -2000,
            -600,
            -60,
            -30,
            0,
            1,
            5,
            10,
            15,
            20,
            30,
            45,
            50,
            80,
            90,
            100,
            180,
            200,
            270,
            400,
            500,
            520,
            600,
            650,
            701,
            900,
            2000,
        )
    ]
    as_of = [at(-2000) - timedelta(seconds=1), at(45, 500), BASE + timedelta(days=10)]
    as_of += instants + [b + d for b in boundaries for d in (-MS, timedelta(0), MS)]
    return s.build(as_of)


# --------------------------------------------------------------------------- random scenario


def random_scenario(seed: int, shipments: int = 40, sites: int = 6, skus: int = 5) -> Scenario:
    """Random valid lifecycles and stock events, plus duplicates and invalid noise, shuffled."""
    rng = random.Random(seed)
    s = _Stream(rng)
    site_ids = [f"SITE-{i:02d}" for i in range(1, sites + 1)] + ["SITE-UNLISTED"]
    sku_ids = [f"TIRE-{i:03d}" for i in range(1, skus + 1)] + ["TIRE-UNLISTED"]

    def when(low_minutes: float, high_minutes: float) -> datetime:
        """A random instant; mostly whole minutes so that exact ties happen."""
        minutes = rng.randint(int(low_minutes), int(high_minutes))
        ms = rng.randint(0, 59_999) if rng.random() < 0.3 else 0
        return at(minutes, ms)

    def plan_lines() -> list[dict[str, Any]]:
        count = rng.randint(1, 3)
        return _lines(*[(rng.choice(sku_ids), rng.randint(1, 40)) for _ in range(count)])

    def plan(sid: str, t: datetime) -> dict[str, Any]:
        origin, destination = rng.sample(site_ids, 2)
        departure = t + timedelta(minutes=rng.randint(30, 240))
        return s.shipment(
            "created",
            sid,
            t,
            origin_site_id=origin,
            destination_site_id=destination,
            carrier_id=rng.choice(["CARR-DHL", "CARR-DB", "CARR-MAERSK", "CARR-UNLISTED"]),
            mode=rng.choice(sorted(["road", "rail", "sea"])),
            planned_departure=departure,
            planned_arrival=departure + timedelta(minutes=rng.randint(120, 1440)),
            lines=plan_lines(),
        )

    kinds = [
        "planned",
        "in_transit",
        "arrived",
        "arrived_no_departed",
        "delivered",
        "delivered_direct",
        "cancel_before",
        "cancel_after_departure",
        "cancel_after_delivery",
        "positions_only",
    ]
    for n in range(shipments):
        sid = f"SHP-R{n:04d}"
        kind = rng.choice(kinds)
        t0 = when(0, 600)
        if kind == "positions_only":
            for _ in range(rng.randint(1, 3)):
                s.emit(
                    s.shipment(
                        "position",
                        sid,
                        when(0, 2000),
                        lat=rng.uniform(-90, 90),
                        lon=rng.uniform(-180, 180),
                    )
                )
            continue
        first = s.emit(plan(sid, t0))
        planned_departure = _instant(first["planned_departure"])
        planned_arrival = _instant(first["planned_arrival"])
        departed = planned_departure + timedelta(minutes=rng.randint(-30, 90))
        arrived = max(departed, planned_arrival + timedelta(minutes=rng.randint(-120, 240)))
        delivered = arrived + timedelta(minutes=rng.randint(0, 120))
        has_departed = kind not in (
            "planned",
            "arrived_no_departed",
            "delivered_direct",
            "cancel_before",
        )
        has_arrived = kind in (
            "arrived",
            "arrived_no_departed",
            "delivered",
            "cancel_after_delivery",
        )
        has_delivered = kind in ("delivered", "delivered_direct", "cancel_after_delivery")
        if rng.random() < 0.25:  # a re-plan, possibly after departure
            s.emit(plan(sid, t0 + timedelta(minutes=rng.randint(0, 300))))
        if has_departed:
            dep = s.emit(s.shipment("departed", sid, departed))
            if rng.random() < 0.3:  # a position at exactly the departure instant
                same = _instant(dep["occurred_at"])
                s.emit(s.shipment("position", sid, same, lat=48.0, lon=11.0))
            for _ in range(rng.randint(0, 4)):
                moment = departed + (arrived - departed) * rng.random()
                moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
                s.emit(
                    s.shipment(
                        "position",
                        sid,
                        moment,
                        lat=round(rng.uniform(40, 55), 5),
                        lon=round(rng.uniform(-5, 20), 5),
                        speed_kmh=rng.choice([None, 0, 80.5]),
                    )
                )
        for _ in range(rng.randint(0, 2)):
            eta_at = when(_minutes_after_base(t0) - 30, _minutes_after_base(arrived))
            eta = planned_arrival + timedelta(minutes=rng.randint(-60, 300))
            s.emit(s.shipment("eta_updated", sid, eta_at, eta=eta))
        if rng.random() < 0.3:
            s.emit(
                s.shipment(
                    "exception",
                    sid,
                    when(_minutes_after_base(t0), 2000),
                    code=rng.choice(sorted(["TRAFFIC", "WEATHER", "DAMAGE"])),
                    severity="warning",
                    lat=45.0,
                    lon=9.0,
                )
            )
        if has_arrived:
            s.emit(s.shipment("arrived", sid, arrived))
        if has_delivered:
            for _ in range(2 if rng.random() < 0.2 else 1):
                lines = [
                    {"sku": line["sku"], "quantity": max(0, line["quantity"] - rng.randint(0, 2))}
                    for line in first["lines"]
                ]
                s.emit(
                    s.shipment(
                        "delivered", sid, delivered, lines=lines, damaged_quantity=rng.randint(0, 2)
                    )
                )
                delivered += timedelta(minutes=rng.randint(0, 90))
        if kind == "cancel_before":
            s.emit(s.shipment("cancelled", sid, t0 + timedelta(minutes=rng.randint(0, 60))))
        elif kind == "cancel_after_departure":
            s.emit(s.shipment("cancelled", sid, departed + timedelta(minutes=rng.randint(0, 300))))
        elif kind == "cancel_after_delivery":
            s.emit(s.shipment("cancelled", sid, delivered + timedelta(minutes=rng.randint(0, 60))))

    for site in site_ids:
        for sku in sku_ids:
            if rng.random() < 0.5:
                on_hand = rng.randint(0, 500)
                s.emit(s.inventory("counted", site, sku, when(-120, 0), on_hand=on_hand))
            if rng.random() < 0.2:
                on_hand = rng.randint(0, 500)
                s.emit(s.inventory("counted", site, sku, when(0, 2000), on_hand=on_hand))
            for _ in range(rng.randint(0, 2)):
                delta = rng.choice([-1, 1]) * rng.randint(1, 50)
                reason = rng.choice(sorted(["produced", "sold", "scrapped", "correction"]))
                s.emit(
                    s.inventory("adjusted", site, sku, when(-60, 2000), delta=delta, reason=reason)
                )

    valid = [m for unit in s.units for m in unit]
    for message in rng.sample(valid, max(1, len(valid) // 20)):  # duplicates
        key = message.key if rng.random() < 0.7 else f"replay/{message.key}"
        s.add(_Message(message.family, key, message.value, True, message.event_id))
    for message in rng.sample(valid, max(1, len(valid) // 10)):  # invalid noise
        event = json.loads(message.value)
        mutations = envelope_mutations(event) + type_mutations(event)
        _label, family, key, value = rng.choice(mutations)
        s.add(_Message(family, key, value, False))

    instants = sorted(set(s.instants))
    as_of = [instants[0] - timedelta(seconds=1), instants[-1], BASE + timedelta(days=10)]
    for instant in rng.sample(instants, min(8, len(instants))):
        as_of += [instant - MS, instant, instant + MS]
    as_of += [when(0, 2000) for _ in range(6)]
    return s.build(as_of)


def _minutes_after_base(instant: datetime) -> int:
    return int((instant - BASE) / timedelta(minutes=1))
