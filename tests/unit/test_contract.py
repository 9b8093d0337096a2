"""Unit tests for ingest.contract: every event type, every validation rule, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.contract import (
    EVENT_COLUMNS,
    INVENTORY,
    SHIPMENTS,
    InventoryEvent,
    Rejected,
    ShipmentEvent,
    to_row,
    validate,
)
from ingest.errors import TiretrackError

ABSENT = object()  # marks a field to delete from a valid example

ENVELOPE: dict[str, Any] = {
    "event_id": "evt-0001",
    "schema_version": 1,
    "occurred_at": "2024-05-01T10:00:00+02:00",
    "source": "plant-munich",
}

# One valid example of every event type (occurred_at is written with a +02:00 offset).
VALID: dict[str, dict[str, Any]] = {
    "shipment.created": {
        "shipment_id": "SHP-1",
        "origin_site_id": "PLANT-MUC",
        "destination_site_id": "DC-HAM",
        "carrier_id": "CAR-7",
        "mode": "road",
        "planned_departure": "2024-05-01T12:00:00Z",
        "planned_arrival": "2024-05-02T08:30:00-04:00",
        "lines": [{"sku": "TIRE-205-55-R16", "quantity": 120}, {"sku": "TIRE-225", "quantity": 4}],
    },
    "shipment.departed": {"shipment_id": "SHP-1"},
    "shipment.position": {
        "shipment_id": "SHP-1",
        "lat": 48.1,
        "lon": 11,
        "speed_kmh": 82.5,
        "heading_deg": 270,
    },
    "shipment.eta_updated": {
        "shipment_id": "SHP-1",
        "eta": "2024-05-02T14:00:00+05:30",
        "reason": "congestion on A7",
    },
    "shipment.exception": {
        "shipment_id": "SHP-1",
        "code": "BREAKDOWN",
        "severity": "warning",
        "message": "trailer tyre burst",
        "estimated_delay_minutes": 90,
    },
    "shipment.arrived": {"shipment_id": "SHP-1", "lat": 53.55, "lon": 9.99},
    "shipment.delivered": {
        "shipment_id": "SHP-1",
        "lines": [{"sku": "TIRE-205-55-R16", "quantity": 118}],
        "damaged_quantity": 2,
    },
    "shipment.cancelled": {"shipment_id": "SHP-1", "reason": "customer order withdrawn"},
    "inventory.counted": {"site_id": "DC-HAM", "sku": "TIRE-225", "on_hand": 340},
    "inventory.adjusted": {
        "site_id": "PLANT-MUC",
        "sku": "TIRE-225",
        "delta": -12,
        "reason": "sold",
    },
}

OCCURRED_UTC = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

# The columns each example fills; every other column must be None.
EXPECTED_COLUMNS: dict[str, dict[str, Any]] = {
    "shipment.created": {
        "shipment_id": "SHP-1",
        "origin_site_id": "PLANT-MUC",
        "destination_site_id": "DC-HAM",
        "carrier_id": "CAR-7",
        "mode": "road",
        "planned_departure": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "planned_arrival": datetime(2024, 5, 2, 12, 30, tzinfo=UTC),
        "lines": [
            {"sku": "TIRE-205-55-R16", "quantity": 120},
            {"sku": "TIRE-225", "quantity": 4},
        ],
    },
    "shipment.departed": {"shipment_id": "SHP-1"},
    "shipment.position": {
        "shipment_id": "SHP-1",
        "lat": 48.1,
        "lon": 11.0,
        "speed_kmh": 82.5,
        "heading_deg": 270.0,
    },
    "shipment.eta_updated": {
        "shipment_id": "SHP-1",
        "eta": datetime(2024, 5, 2, 8, 30, tzinfo=UTC),
        "reason": "congestion on A7",
    },
    "shipment.exception": {
        "shipment_id": "SHP-1",
        "code": "BREAKDOWN",
        "severity": "warning",
        "message": "trailer tyre burst",
        "estimated_delay_minutes": 90,
    },
    "shipment.arrived": {"shipment_id": "SHP-1", "lat": 53.55, "lon": 9.99},
    "shipment.delivered": {
        "shipment_id": "SHP-1",
        "lines": [{"sku": "TIRE-205-55-R16", "quantity": 118}],
        "damaged_quantity": 2,
    },
    "shipment.cancelled": {"shipment_id": "SHP-1", "reason": "customer order withdrawn"},
    "inventory.counted": {"site_id": "DC-HAM", "sku": "TIRE-225", "on_hand": 340},
    "inventory.adjusted": {
        "site_id": "PLANT-MUC",
        "sku": "TIRE-225",
        "delta": -12,
        "reason": "sold",
    },
}


def family_of(event_type: str) -> str:
    return SHIPMENTS if event_type.startswith("shipment.") else INVENTORY


def message(event_type: str, /, **changes: Any) -> dict[str, Any]:
    """The valid example of `event_type` with fields replaced, added or (ABSENT) removed."""
    fields = {**ENVELOPE, "event_type": event_type, **VALID[event_type]}
    for name, value in changes.items():
        if value is ABSENT:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def encode(fields: Any) -> bytes:
    # allow_nan: the stdlib writes NaN/Infinity literals, exactly the non-JSON we must reject.
    return json.dumps(fields, allow_nan=True).encode()


def raw(text: str) -> bytes:
    return text.encode()


def msg(event_type: str, /, **changes: Any) -> bytes:
    return encode(message(event_type, **changes))


def check(event_type: str, /, **changes: Any) -> Any:
    """Validate the changed example; typed Any because tests read type-specific fields."""
    return validate(family_of(event_type), encode(message(event_type, **changes)))


def test_event_columns_are_the_documented_order() -> None:
    assert EVENT_COLUMNS == (
        "event_id", "event_type", "occurred_at", "source", "shipment_id", "site_id", "lat",
        "lon", "origin_site_id", "destination_site_id", "carrier_id", "mode",
        "planned_departure", "planned_arrival", "lines", "damaged_quantity", "speed_kmh",
        "heading_deg", "eta", "reason", "code", "severity", "message",
        "estimated_delay_minutes", "sku", "on_hand", "delta",
    )  # fmt: skip


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_event_becomes_a_row_in_utc(event_type: str) -> None:
    event = check(event_type)

    assert event.event_type == event_type
    row = dict(zip(EVENT_COLUMNS, to_row(event), strict=True))
    expected = dict.fromkeys(EVENT_COLUMNS)
    expected.update(
        event_id="evt-0001",
        event_type=event_type,
        occurred_at=OCCURRED_UTC,
        source="plant-munich",
        **EXPECTED_COLUMNS[event_type],
    )
    assert row == expected
    for column in ("occurred_at", "planned_departure", "planned_arrival", "eta"):
        if row[column] is not None:
            assert row[column].utcoffset().total_seconds() == 0
    for column in ("lat", "lon", "speed_kmh", "heading_deg"):
        if row[column] is not None:
            assert type(row[column]) is float


def test_families_return_their_base_class() -> None:
    assert isinstance(check("shipment.departed"), ShipmentEvent)
    assert isinstance(check("inventory.counted"), InventoryEvent)


def test_null_counts_as_absent_for_optional_fields() -> None:
    position = check("shipment.position", lat=1, lon=2, speed_kmh=None, heading_deg=None)
    row = dict(zip(EVENT_COLUMNS, to_row(position), strict=True))
    assert (row["lat"], row["lon"], row["speed_kmh"], row["heading_deg"]) == (1.0, 2.0, None, None)
    assert check("shipment.departed", lat=None, lon=None).lat is None
    assert check("shipment.eta_updated", reason=None).reason is None
    assert check("shipment.cancelled", reason=None).reason is None
    event = check("shipment.exception", message=None, estimated_delay_minutes=None)
    assert (event.message, event.estimated_delay_minutes) == (None, None)
    assert check("shipment.delivered", damaged_quantity=None).damaged_quantity is None


def test_optional_fields_may_be_left_out() -> None:
    check("shipment.position", speed_kmh=ABSENT, heading_deg=ABSENT)
    check("shipment.eta_updated", reason=ABSENT)
    check("shipment.exception", message=ABSENT, estimated_delay_minutes=ABSENT)
    check("shipment.delivered", damaged_quantity=ABSENT)
    check("shipment.cancelled", reason=ABSENT)


def test_unknown_extra_fields_are_ignored_whatever_they_hold() -> None:
    garbage = {"nested": [1, {"deep": [None, True, "x"]}], "huge": 10**40}
    value = msg("shipment.created", extra=garbage, mode_v2="hovercraft", site_id=[])
    # A number too large for a float is still JSON; msgspec only skips over it.
    event = validate(SHIPMENTS, value[:-1] + b', "big_float": -1e400}')
    assert to_row(event)[EVENT_COLUMNS.index("site_id")] is None
    # A field of the other family is an unknown field here, not validated.
    assert check("inventory.counted", shipment_id=12, lat="north").sku == "TIRE-225"


def test_every_shipment_event_may_carry_a_position() -> None:
    for event_type in sorted(VALID):
        if event_type.startswith("shipment."):
            event = check(event_type, lat=-90, lon=180)
            assert (event.lat, event.lon) == (-90.0, 180.0)


def test_boundaries_are_inclusive() -> None:
    check("shipment.position", lat=90, lon=-180, heading_deg=0, speed_kmh=0)
    check("shipment.position", lat=-90.0, lon=180.0, heading_deg=360)
    check("shipment.exception", estimated_delay_minutes=0)
    check("shipment.delivered", damaged_quantity=0, lines=[{"sku": "A", "quantity": 0}])
    check("inventory.counted", on_hand=0)
    check("inventory.counted", on_hand=2**63 - 1)
    check("inventory.adjusted", delta=-(2**63))
    check("inventory.adjusted", delta=2**63 - 1)
    check("shipment.departed", event_id="e" * 64, shipment_id="S" * 64)
    # Lengths count characters, not UTF-8 bytes.
    check("inventory.counted", sku="é" * 64)


def test_delivered_lines_may_be_empty() -> None:
    # Everything may arrive damaged: the field is required, the list may be empty.
    event = check("shipment.delivered", lines=[], damaged_quantity=120)
    assert to_row(event)[EVENT_COLUMNS.index("lines")] == []


@pytest.mark.parametrize("reason", ["produced", "sold", "scrapped", "correction"])
def test_every_adjustment_reason(reason: str) -> None:
    assert check("inventory.adjusted", reason=reason).reason == reason


@pytest.mark.parametrize("mode", ["road", "rail", "sea"])
def test_every_mode(mode: str) -> None:
    assert check("shipment.created", mode=mode).mode == mode


@pytest.mark.parametrize(
    "code", ["TRAFFIC", "WEATHER", "BREAKDOWN", "CUSTOMS", "STRIKE", "DAMAGE", "OTHER"]
)
@pytest.mark.parametrize("severity", ["info", "warning", "critical"])
def test_every_exception_code_and_severity(code: str, severity: str) -> None:
    event = check("shipment.exception", code=code, severity=severity)
    assert (event.code, event.severity) == (code, severity)


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00.250+00:00", datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=UTC)),
        ("2024-05-01T02:00:00-06:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T13:45:00+05:45", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00-00:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T00:30:00+01:00", datetime(2024, 4, 30, 23, 30, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(written: str, utc: datetime) -> None:
    occurred_at = check("shipment.departed", occurred_at=written).occurred_at
    assert occurred_at == utc
    assert occurred_at.tzinfo is UTC


def test_field_order_does_not_matter() -> None:
    fields = message("shipment.departed")
    reordered = dict(reversed(list(fields.items())))
    assert validate(SHIPMENTS, encode(reordered)).event_type == "shipment.departed"


def test_unknown_family_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown topic family"):
        validate("orders", encode(message("shipment.departed")))


def test_rejected_is_a_tiretrack_error_with_a_reason() -> None:
    with pytest.raises(Rejected) as caught:
        validate(SHIPMENTS, b"[]")
    assert isinstance(caught.value, TiretrackError)
    assert caught.value.reason == str(caught.value) == "not a JSON object"


def test_reason_quoting_input_stays_one_short_line() -> None:
    with pytest.raises(Rejected) as caught:
        check("shipment.created", mode="bus\n" + "x" * 10_000)
    assert "\n" not in caught.value.reason
    assert len(caught.value.reason) <= 300


CREATED = "shipment.created"
POSITION = "shipment.position"
DEPARTED = "shipment.departed"
EXCEPTION = "shipment.exception"
DELIVERED = "shipment.delivered"
COUNTED = "inventory.counted"
ADJUSTED = "inventory.adjusted"
V2_GARBAGE = '{"schema_version": 2, "event_type": ["x"], "lines": "all", "occurred_at": 5}'

# (id, topic family, message value, fragment the reason must contain)
INVALID: list[tuple[str, str, bytes | None, str]] = [
    # Not a JSON object.
    ("none-value", SHIPMENTS, None, "empty message value"),
    ("empty-value", INVENTORY, b"", "empty message value"),
    ("whitespace", SHIPMENTS, b"  \n", "invalid JSON"),
    ("invalid-utf8-in-ignored-field", SHIPMENTS,
     msg(DEPARTED)[:-1] + b', "note": "\xff\xfe"}', "invalid JSON: not valid UTF-8"),
    ("invalid-utf8-in-id", SHIPMENTS, msg(DEPARTED).replace(b"SHP-1", b"SHP-\xc3"),
     "not valid UTF-8"),
    ("lone-surrogate-escape", SHIPMENTS, msg(DEPARTED, shipment_id="\ud800"), "invalid JSON"),
    ("truncated", SHIPMENTS, msg(DEPARTED)[:-5], "invalid JSON"),
    ("trailing-garbage", SHIPMENTS, msg(DEPARTED) + b" {}", "invalid JSON"),
    ("single-quotes", SHIPMENTS, raw("{'event_id': 'x'}"), "invalid JSON"),
    ("nan", SHIPMENTS, msg(POSITION, speed_kmh=float("nan")), "invalid JSON"),
    ("infinity", SHIPMENTS, msg(POSITION, speed_kmh=float("inf")), "invalid JSON"),
    ("minus-infinity-in-ignored-field", SHIPMENTS, msg(DEPARTED, x=float("-inf")),
     "invalid JSON"),
    ("nested-too-deep", SHIPMENTS, msg(DEPARTED)[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000
     + b"}", "nested too deeply"),
    ("array", SHIPMENTS, encode([message(DEPARTED)]), "not a JSON object"),
    ("string", SHIPMENTS, raw('"shipment.departed"'), "not a JSON object"),
    ("number", INVENTORY, raw("1"), "not a JSON object"),
    ("null", INVENTORY, raw("null"), "not a JSON object"),
    # schema_version.
    ("version-missing", SHIPMENTS, msg(DEPARTED, schema_version=ABSENT),
     "missing required field `schema_version`"),
    ("version-null", SHIPMENTS, msg(DEPARTED, schema_version=None),
     "missing required field `schema_version`"),
    ("version-string", SHIPMENTS, msg(DEPARTED, schema_version="1"),
     'schema_version must be the JSON integer 1, got "1"'),
    ("version-float", SHIPMENTS, msg(DEPARTED, schema_version=1.0),
     "schema_version must be the JSON integer 1, got 1.0"),
    ("version-true", SHIPMENTS, msg(DEPARTED, schema_version=True),
     "schema_version must be the JSON integer 1, got true"),
    ("version-overflowing-float", SHIPMENTS, raw('{"schema_version": 1e400}'),
     "schema_version must be the JSON integer 1"),
    ("version-zero", SHIPMENTS, msg(DEPARTED, schema_version=0), "invalid schema_version 0"),
    ("version-negative", INVENTORY, msg(COUNTED, schema_version=-1), "invalid schema_version -1"),
    ("version-2", SHIPMENTS, msg(DEPARTED, schema_version=2), "unsupported schema_version 2"),
    ("version-huge", INVENTORY, msg(COUNTED, schema_version=10**30),
     "unsupported schema_version"),
    ("version-2-garbage-body", SHIPMENTS, raw(V2_GARBAGE), "unsupported schema_version 2"),
    ("version-2-garbage-body-inventory", INVENTORY, raw(V2_GARBAGE),
     "unsupported schema_version 2"),
    ("version-2-unknown-type", SHIPMENTS, msg(DEPARTED, schema_version=2, event_type="x.y"),
     "unsupported schema_version 2"),
    # event_type and topic family.
    ("type-missing", SHIPMENTS, msg(DEPARTED, event_type=ABSENT),
     "missing required field `event_type`"),
    ("type-null", SHIPMENTS, msg(DEPARTED, event_type=None),
     "missing required field `event_type`"),
    ("type-not-string", SHIPMENTS, msg(DEPARTED, event_type=5), "event_type must be a string"),
    ("type-unknown", SHIPMENTS, msg(DEPARTED, event_type="foo"), "unknown event_type 'foo'"),
    ("type-unknown-in-family-namespace", SHIPMENTS, msg(DEPARTED, event_type="shipment.lost"),
     "unknown event_type 'shipment.lost'"),
    ("type-case", SHIPMENTS, msg(DEPARTED, event_type="Shipment.Departed"), "unknown event_type"),
    ("inventory-on-shipments", SHIPMENTS, msg(COUNTED),
     "event_type 'inventory.counted' is not allowed on the shipments topic"),
    ("shipment-on-inventory", INVENTORY, msg(DEPARTED),
     "event_type 'shipment.departed' is not allowed on the inventory topic"),
    # Envelope fields.
    ("event-id-missing", SHIPMENTS, msg(DEPARTED, event_id=ABSENT),
     "missing required field `event_id`"),
    ("event-id-null", SHIPMENTS, msg(DEPARTED, event_id=None),
     "missing required field `event_id`"),
    ("event-id-empty", SHIPMENTS, msg(DEPARTED, event_id=""), "`$.event_id`"),
    ("event-id-too-long", SHIPMENTS, msg(DEPARTED, event_id="e" * 65), "length <= 64"),
    ("event-id-int", SHIPMENTS, msg(DEPARTED, event_id=17), "Expected `str`, got `int`"),
    ("occurred-at-missing", SHIPMENTS, msg(DEPARTED, occurred_at=ABSENT),
     "missing required field `occurred_at`"),
    ("occurred-at-no-offset", SHIPMENTS, msg(DEPARTED, occurred_at="2024-05-01T10:00:00"),
     "timezone"),
    ("occurred-at-date-only", SHIPMENTS, msg(DEPARTED, occurred_at="2024-05-01"),
     "`$.occurred_at`"),
    ("occurred-at-garbage", SHIPMENTS, msg(DEPARTED, occurred_at="yesterday"),
     "`$.occurred_at`"),
    ("occurred-at-impossible-date", SHIPMENTS, msg(DEPARTED, occurred_at="2024-02-30T10:00:00Z"),
     "`$.occurred_at`"),
    ("occurred-at-epoch-number", SHIPMENTS, msg(DEPARTED, occurred_at=1714557600),
     "`$.occurred_at`"),
    ("occurred-at-before-utc-year-1", SHIPMENTS,
     msg(DEPARTED, occurred_at="0001-01-01T00:30:00+01:00"), "out of range"),
    ("source-missing", SHIPMENTS, msg(DEPARTED, source=ABSENT), "missing required field `source`"),
    ("source-empty", SHIPMENTS, msg(DEPARTED, source=""), "`$.source`"),
    ("source-not-string", INVENTORY, msg(COUNTED, source=["wms"]), "`$.source`"),
    # Shipment id and position rules, on any shipment event.
    ("shipment-id-missing", SHIPMENTS, msg(DEPARTED, shipment_id=ABSENT),
     "missing required field `shipment_id`"),
    ("shipment-id-empty", SHIPMENTS, msg(DEPARTED, shipment_id=""), "`$.shipment_id`"),
    ("shipment-id-too-long", SHIPMENTS, msg(DEPARTED, shipment_id="S" * 65), "length <= 64"),
    ("shipment-id-int", SHIPMENTS, msg(DEPARTED, shipment_id=1), "`$.shipment_id`"),
    ("lat-without-lon", SHIPMENTS, msg(DEPARTED, lat=48.1), "`lat` without `lon`"),
    ("lon-without-lat", SHIPMENTS, msg("shipment.arrived", lat=None), "`lon` without `lat`"),
    ("lat-without-lon-on-created", SHIPMENTS, msg(CREATED, lat=1), "`lat` without `lon`"),
    ("lat-too-north", SHIPMENTS, msg(DEPARTED, lat=90.01, lon=0), "`$.lat`"),
    ("lon-too-west", SHIPMENTS, msg("shipment.cancelled", lat=0, lon=-180.5), "`$.lon`"),
    ("lat-bool", SHIPMENTS, msg(POSITION, lat=True), "got `bool` - at `$.lat`"),
    ("lat-string", SHIPMENTS, msg(POSITION, lat="48.1"), "`$.lat`"),
    ("lat-overflowing-float", SHIPMENTS, msg(POSITION)[:-1] + b', "lat": 1e400}', "`$.lat`"),
    # shipment.position.
    ("position-lat-missing", SHIPMENTS, msg(POSITION, lat=ABSENT),
     "missing required field `lat`"),
    ("position-lat-null", SHIPMENTS, msg(POSITION, lat=None), "missing required field `lat`"),
    ("position-lon-missing", SHIPMENTS, msg(POSITION, lon=ABSENT),
     "missing required field `lon`"),
    ("position-both-missing", SHIPMENTS, msg(POSITION, lat=ABSENT, lon=ABSENT),
     "missing required field"),
    ("speed-negative", SHIPMENTS, msg(POSITION, speed_kmh=-0.1), "`$.speed_kmh`"),
    ("speed-string", SHIPMENTS, msg(POSITION, speed_kmh="80"), "`$.speed_kmh`"),
    ("speed-bool", SHIPMENTS, msg(POSITION, speed_kmh=False), "`$.speed_kmh`"),
    ("speed-overflowing-float", SHIPMENTS, msg(POSITION)[:-1] + b', "speed_kmh": 1e999}',
     "`$.speed_kmh`"),
    ("heading-negative", SHIPMENTS, msg(POSITION, heading_deg=-1), "`$.heading_deg`"),
    ("heading-above-360", SHIPMENTS, msg(POSITION, heading_deg=360.5), "`$.heading_deg`"),
    # shipment.created.
    *[
        (f"created-{field}-missing", SHIPMENTS, msg(CREATED, **{field: ABSENT}),
         f"missing required field `{field}`")
        for field in ("origin_site_id", "destination_site_id", "carrier_id", "mode",
                      "planned_departure", "planned_arrival", "lines")
    ],
    ("created-carrier-null", SHIPMENTS, msg(CREATED, carrier_id=None),
     "missing required field `carrier_id`"),
    ("created-origin-empty", SHIPMENTS, msg(CREATED, origin_site_id=""), "`$.origin_site_id`"),
    ("created-destination-too-long", SHIPMENTS, msg(CREATED, destination_site_id="D" * 65),
     "`$.destination_site_id`"),
    ("created-mode-unknown", SHIPMENTS, msg(CREATED, mode="air"), "`$.mode`"),
    ("created-mode-case", SHIPMENTS, msg(CREATED, mode="Road"), "`$.mode`"),
    ("created-planned-arrival-no-offset", SHIPMENTS,
     msg(CREATED, planned_arrival="2024-05-02T08:30:00"), "`$.planned_arrival`"),
    ("created-planned-departure-garbage", SHIPMENTS, msg(CREATED, planned_departure="soon"),
     "`$.planned_departure`"),
    ("created-no-lines", SHIPMENTS, msg(CREATED, lines=[]), "`$.lines`"),
    ("created-lines-null", SHIPMENTS, msg(CREATED, lines=None), "missing required field `lines`"),
    ("created-lines-object", SHIPMENTS, msg(CREATED, lines={"sku": "A", "quantity": 1}),
     "`$.lines`"),
    ("created-line-null", SHIPMENTS, msg(CREATED, lines=[None]), "`$.lines[0]`"),
    ("created-quantity-zero", SHIPMENTS, msg(CREATED, lines=[{"sku": "A", "quantity": 0}]),
     "`$.lines[0].quantity`"),
    ("created-quantity-negative", SHIPMENTS,
     msg(CREATED, lines=[{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": -4}]),
     "`$.lines[1].quantity`"),
    ("created-quantity-fraction", SHIPMENTS, msg(CREATED, lines=[{"sku": "A", "quantity": 120.5}]),
     "Expected `int`, got `float` - at `$.lines[0].quantity`"),
    ("created-quantity-integral-float", SHIPMENTS,
     msg(CREATED, lines=[{"sku": "A", "quantity": 3.0}]), "got `float`"),
    ("created-quantity-string", SHIPMENTS, msg(CREATED, lines=[{"sku": "A", "quantity": "3"}]),
     "got `str` - at `$.lines[0].quantity`"),
    ("created-quantity-bool", SHIPMENTS, msg(CREATED, lines=[{"sku": "A", "quantity": True}]),
     "got `bool`"),
    ("created-quantity-beyond-int64", SHIPMENTS,
     msg(CREATED, lines=[{"sku": "A", "quantity": 2**63}]), "`$.lines[0].quantity`"),
    ("created-quantity-missing", SHIPMENTS, msg(CREATED, lines=[{"sku": "A"}]),
     "missing required field `quantity` - at `$.lines[0]`"),
    ("created-sku-null", SHIPMENTS, msg(CREATED, lines=[{"sku": None, "quantity": 1}]),
     "missing required field `sku` - at `$.lines[0]`"),
    ("created-sku-empty", SHIPMENTS, msg(CREATED, lines=[{"sku": "", "quantity": 1}]),
     "`$.lines[0].sku`"),
    ("created-sku-too-long", SHIPMENTS, msg(CREATED, lines=[{"sku": "K" * 65, "quantity": 1}]),
     "`$.lines[0].sku`"),
    # shipment.eta_updated.
    ("eta-missing", SHIPMENTS, msg("shipment.eta_updated", eta=ABSENT),
     "missing required field `eta`"),
    ("eta-no-offset", SHIPMENTS, msg("shipment.eta_updated", eta="2024-05-02T14:00:00"),
     "`$.eta`"),
    ("eta-reason-not-string", SHIPMENTS, msg("shipment.eta_updated", reason=3), "`$.reason`"),
    # shipment.exception.
    ("exception-code-missing", SHIPMENTS, msg(EXCEPTION, code=ABSENT),
     "missing required field `code`"),
    ("exception-code-lowercase", SHIPMENTS, msg(EXCEPTION, code="traffic"), "`$.code`"),
    ("exception-severity-missing", SHIPMENTS, msg(EXCEPTION, severity=None),
     "missing required field `severity`"),
    ("exception-severity-unknown", SHIPMENTS, msg(EXCEPTION, severity="fatal"), "`$.severity`"),
    ("exception-message-not-string", SHIPMENTS, msg(EXCEPTION, message={"text": "x"}),
     "`$.message`"),
    ("exception-delay-negative", SHIPMENTS, msg(EXCEPTION, estimated_delay_minutes=-5),
     "`$.estimated_delay_minutes`"),
    ("exception-delay-fraction", SHIPMENTS, msg(EXCEPTION, estimated_delay_minutes=120.5),
     "got `float` - at `$.estimated_delay_minutes`"),
    ("exception-delay-string", SHIPMENTS, msg(EXCEPTION, estimated_delay_minutes="3"),
     "got `str` - at `$.estimated_delay_minutes`"),
    ("exception-delay-bool", SHIPMENTS, msg(EXCEPTION, estimated_delay_minutes=True),
     "got `bool`"),
    # shipment.delivered.
    ("delivered-lines-missing", SHIPMENTS, msg(DELIVERED, lines=ABSENT),
     "missing required field `lines`"),
    ("delivered-quantity-negative", SHIPMENTS,
     msg(DELIVERED, lines=[{"sku": "A", "quantity": -1}]), "`$.lines[0].quantity`"),
    ("delivered-sku-missing", SHIPMENTS, msg(DELIVERED, lines=[{"quantity": 1}]),
     "missing required field `sku` - at `$.lines[0]`"),
    ("delivered-damaged-negative", SHIPMENTS, msg(DELIVERED, damaged_quantity=-2),
     "`$.damaged_quantity`"),
    ("delivered-damaged-fraction", SHIPMENTS, msg(DELIVERED, damaged_quantity=1.5),
     "`$.damaged_quantity`"),
    ("delivered-damaged-huge", SHIPMENTS, msg(DELIVERED, damaged_quantity=10**30),
     "`$.damaged_quantity`"),
    # shipment.cancelled.
    ("cancelled-reason-not-string", SHIPMENTS, msg("shipment.cancelled", reason=["x"]),
     "`$.reason`"),
    # Inventory events.
    ("site-id-missing", INVENTORY, msg(COUNTED, site_id=ABSENT),
     "missing required field `site_id`"),
    ("site-id-empty", INVENTORY, msg(ADJUSTED, site_id=""), "`$.site_id`"),
    ("sku-missing", INVENTORY, msg(COUNTED, sku=ABSENT), "missing required field `sku`"),
    ("sku-null", INVENTORY, msg(ADJUSTED, sku=None), "missing required field `sku`"),
    ("sku-too-long", INVENTORY, msg(COUNTED, sku="K" * 65), "`$.sku`"),
    ("on-hand-missing", INVENTORY, msg(COUNTED, on_hand=ABSENT),
     "missing required field `on_hand`"),
    ("on-hand-negative", INVENTORY, msg(COUNTED, on_hand=-1), "`$.on_hand`"),
    ("on-hand-fraction", INVENTORY, msg(COUNTED, on_hand=12.5), "got `float` - at `$.on_hand`"),
    ("on-hand-string", INVENTORY, msg(COUNTED, on_hand="3"), "got `str` - at `$.on_hand`"),
    ("on-hand-bool", INVENTORY, msg(COUNTED, on_hand=True), "got `bool` - at `$.on_hand`"),
    ("on-hand-beyond-int64", INVENTORY, msg(COUNTED, on_hand=2**63), "`$.on_hand`"),
    ("on-hand-beyond-uint64", INVENTORY, msg(COUNTED, on_hand=2**64 + 1), "`$.on_hand`"),
    ("delta-missing", INVENTORY, msg(ADJUSTED, delta=ABSENT), "missing required field `delta`"),
    ("delta-zero", INVENTORY, msg(ADJUSTED, delta=0), "`delta` must be non-zero"),
    ("delta-fraction", INVENTORY, msg(ADJUSTED, delta=-1.5), "got `float` - at `$.delta`"),
    ("delta-string", INVENTORY, msg(ADJUSTED, delta="-3"), "got `str` - at `$.delta`"),
    ("delta-above-int64", INVENTORY, msg(ADJUSTED, delta=2**63), "`$.delta`"),
    ("delta-below-int64", INVENTORY, msg(ADJUSTED, delta=-(2**63) - 1), "`$.delta`"),
    ("adjusted-reason-missing", INVENTORY, msg(ADJUSTED, reason=ABSENT),
     "missing required field `reason`"),
    ("adjusted-reason-unknown", INVENTORY, msg(ADJUSTED, reason="stolen"), "`$.reason`"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("family", "value", "fragment"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_message_is_rejected(family: str, value: bytes | None, fragment: str) -> None:
    with pytest.raises(Rejected) as caught:
        validate(family, value)
    reason = caught.value.reason
    assert fragment in reason
    assert "\n" not in reason


def test_invalid_cases_break_only_the_rule_they_name() -> None:
    # Guards the table above: the examples it mutates are themselves valid.
    for event_type in VALID:
        validate(family_of(event_type), msg(event_type))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_an_event_or_rejected(value: bytes) -> None:
    for family in (SHIPMENTS, INVENTORY):
        try:
            event = validate(family, value)
        except Rejected:
            continue
        assert len(to_row(event)) == len(EVENT_COLUMNS)


@given(
    st.sampled_from(sorted(VALID)),
    st.sampled_from(sorted({*ENVELOPE, "event_type", *(f for v in VALID.values() for f in v)})),
    json_values,
)
def test_one_field_set_to_anything_is_an_event_or_rejected(
    event_type: str, field: str, value: Any
) -> None:
    try:
        event = check(event_type, **{field: value})
    except Rejected:
        return
    assert len(to_row(event)) == len(EVENT_COLUMNS)
