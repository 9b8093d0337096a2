"""The event contract (shared/contract/EVENTS.md): validation of one Kafka message, event -> row.

A message is decoded in one pass by a typed msgspec decoder built at import time; only a
message that fails takes the slow path, which re-reads it loosely to pick the clearest reason.

Choices where the contract is silent or where storage imposes a limit:
- Integers are stored as BIGINT, so an integer outside the signed 64-bit range is rejected.
- Timestamps are parsed by msgspec's RFC 3339 parser, which also accepts a space or a lowercase
  `t` as separator (RFC 3339 section 5.6 note), a lowercase `z` and `+hhmm` offsets; seconds are
  required, leap seconds (`:60`) are rejected and fractions beyond microseconds are rounded.
  Accepted timestamps are normalised to UTC; one that cannot be expressed in UTC (year 1 or
  9999 with an offset) is rejected.
- Invalid UTF-8 anywhere in the value, even inside an ignored field, rejects the message, and
  so does JSON nested deeper than the decoder's recursion limit (about 1000 levels).
- A `shipment.delivered` with an empty `lines` list is valid: everything may have arrived
  damaged (`damaged_quantity`). Repeated SKUs in `lines` are accepted (quantities add up).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from ingest.errors import TiretrackError

SHIPMENTS: Final = "shipments"
INVENTORY: Final = "inventory"

# Reasons go into a Kafka header and a table cell: keep them short even when they quote input.
_MAX_REASON = 300

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

Id = Annotated[str, Meta(min_length=1, max_length=64)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
Timestamp = Annotated[datetime, Meta(tz=True)]
Count = Annotated[int, Meta(ge=0, le=_INT64_MAX)]
PositiveCount = Annotated[int, Meta(gt=0, le=_INT64_MAX)]
Int64 = Annotated[int, Meta(ge=_INT64_MIN, le=_INT64_MAX)]
Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]
Mode = Literal["road", "rail", "sea"]
ExceptionCode = Literal["TRAFFIC", "WEATHER", "BREAKDOWN", "CUSTOMS", "STRIKE", "DAMAGE", "OTHER"]
Severity = Literal["info", "warning", "critical"]
AdjustmentReason = Literal["produced", "sold", "scrapped", "correction"]


class Rejected(TiretrackError):
    """A message breaks the event contract; `reason` is one short line naming the field."""

    reason: str

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        super().__init__(reason)
        self.reason = reason


def _utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # ValueError raised in __post_init__ becomes a msgspec.ValidationError.
        raise ValueError(
            f"{field} is out of range once converted to UTC - at `$.{field}`"
        ) from None


class PlannedLine(Struct, forbid_unknown_fields=False, gc=False):
    """One SKU of a shipment plan."""

    sku: Id
    quantity: PositiveCount


class DeliveredLine(Struct, forbid_unknown_fields=False, gc=False):
    """One SKU received in good condition."""

    sku: Id
    quantity: Count


# gc=False: events hold only scalars and lists of lines, never cycles; not tracking them makes
# decoding about 5% cheaper.
class Event(
    Struct,
    tag_field="event_type",
    forbid_unknown_fields=False,
    kw_only=True,
    gc=False,
):
    """Envelope shared by every event; `event_type` is the msgspec tag, not a stored field."""

    event_id: Id
    schema_version: Literal[1]
    occurred_at: Timestamp
    source: NonEmptyStr

    @property
    def event_type(self) -> str:
        return str(self.__struct_config__.tag)

    def __post_init__(self) -> None:
        self.occurred_at = _utc(self.occurred_at, "occurred_at")


class ShipmentEvent(Event, kw_only=True):
    """Any `shipment.*` event; every one may carry a position report."""

    shipment_id: Id
    lat: Latitude | None = None
    lon: Longitude | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.lat is None) != (self.lon is None):
            given, other = ("lat", "lon") if self.lon is None else ("lon", "lat")
            raise ValueError(f"`{given}` without `{other}`: a position needs both - at `$`")


class ShipmentCreated(ShipmentEvent, tag="shipment.created", kw_only=True):
    """A shipment is planned (a later one by `occurred_at` replaces the plan)."""

    origin_site_id: Id
    destination_site_id: Id
    carrier_id: Id
    mode: Mode
    planned_departure: Timestamp
    planned_arrival: Timestamp
    lines: Annotated[list[PlannedLine], Meta(min_length=1)]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.planned_departure = _utc(self.planned_departure, "planned_departure")
        self.planned_arrival = _utc(self.planned_arrival, "planned_arrival")


class ShipmentDeparted(ShipmentEvent, tag="shipment.departed", kw_only=True):
    """The shipment left its origin at `occurred_at`."""


class ShipmentPosition(ShipmentEvent, tag="shipment.position", kw_only=True):
    """A telematics ping: unlike other shipment events, the position is required."""

    lat: Latitude
    lon: Longitude
    speed_kmh: Annotated[float, Meta(ge=0)] | None = None
    heading_deg: Annotated[float, Meta(ge=0, le=360)] | None = None


class ShipmentEtaUpdated(ShipmentEvent, tag="shipment.eta_updated", kw_only=True):
    """The carrier's new estimated arrival."""

    eta: Timestamp
    reason: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eta = _utc(self.eta, "eta")


class ShipmentException(ShipmentEvent, tag="shipment.exception", kw_only=True):
    """Something went wrong in transit (an event, not a Python exception)."""

    code: ExceptionCode
    severity: Severity
    message: str | None = None
    estimated_delay_minutes: Count | None = None


class ShipmentArrived(ShipmentEvent, tag="shipment.arrived", kw_only=True):
    """The shipment reached the destination gate at `occurred_at`."""


class ShipmentDelivered(ShipmentEvent, tag="shipment.delivered", kw_only=True):
    """Goods received into the destination's stock."""

    lines: list[DeliveredLine]
    damaged_quantity: Count | None = None


class ShipmentCancelled(ShipmentEvent, tag="shipment.cancelled", kw_only=True):
    """The shipment will not happen or not complete."""

    reason: str | None = None


class InventoryEvent(Event, kw_only=True):
    """Any `inventory.*` event."""

    site_id: Id
    sku: Id


class InventoryCounted(InventoryEvent, tag="inventory.counted", kw_only=True):
    """Absolute stock of one SKU at one site."""

    on_hand: Count


class InventoryAdjusted(InventoryEvent, tag="inventory.adjusted", kw_only=True):
    """A stock change that is not a shipment."""

    delta: Int64
    reason: AdjustmentReason

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delta == 0:
            raise ValueError("`delta` must be non-zero - at `$.delta`")


_FAMILY_UNIONS: Final = {
    SHIPMENTS: ShipmentCreated
    | ShipmentDeparted
    | ShipmentPosition
    | ShipmentEtaUpdated
    | ShipmentException
    | ShipmentArrived
    | ShipmentDelivered
    | ShipmentCancelled,
    INVENTORY: InventoryCounted | InventoryAdjusted,
}
_EVENT_CLASSES: Final[dict[str, tuple[type[Event], ...]]] = {
    family: get_args(union) for family, union in _FAMILY_UNIONS.items()
}
# One decoder per topic family, so an event of the other family fails the typed decode.
_DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    family: msgspec.json.Decoder(union) for family, union in _FAMILY_UNIONS.items()
}
_EVENT_TYPES: Final[dict[str, frozenset[str]]] = {
    family: frozenset(str(cls.__struct_config__.tag) for cls in classes)
    for family, classes in _EVENT_CLASSES.items()
}
# The slow path reads the top-level object without interpreting its values, so a reason can
# be chosen from `schema_version` and `event_type` whatever shape the rest has.
_LOOSE_OBJECT: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_UNREADABLE: Final = object()
_NULL_REQUIRED = re.compile(r"Expected `[^`]*`, got `null` - at `(\$.*)\.(\w+)`")


def validate(family: str, value: bytes | None) -> ShipmentEvent | InventoryEvent:
    """Decode and check one message value from a `family` topic; raise Rejected if invalid."""
    decoder = _DECODERS.get(family)
    if decoder is None:
        raise ValueError(f"unknown topic family {family!r}")
    if not value:
        raise Rejected("empty message value")
    # msgspec skips ignored fields without checking their UTF-8, and raises UnicodeDecodeError
    # (not a DecodeError) on a bad string it does read: check the whole value first.
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(f"invalid JSON: not valid UTF-8 (byte {e.start})") from None
    try:
        event: ShipmentEvent | InventoryEvent = decoder.decode(value)
    except msgspec.DecodeError as e:
        raise Rejected(_explain(family, value, e)) from None
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    return event


def _explain(family: str, value: bytes, error: msgspec.DecodeError) -> str:
    """Pick the reason for a message the typed decoder refused."""
    try:
        fields = _LOOSE_OBJECT.decode(value)
    except msgspec.ValidationError:
        return "not a JSON object"
    except msgspec.DecodeError as e:
        return f"invalid JSON: {e}"
    except RecursionError:
        return "invalid JSON: nested too deeply"

    # The version decides how the rest is read, so its reason wins over any other.
    version_raw = fields.get("schema_version")
    version = _loose_value(version_raw)
    if version is None:
        return "Object missing required field `schema_version`"
    if type(version) is not int:
        return f"schema_version must be the JSON integer 1, got {_json_text(version_raw)}"
    if version >= 2:
        return f"unsupported schema_version {version}: only version 1 is supported"
    if version != 1:
        return f"invalid schema_version {version}: must be 1"

    event_type_raw = fields.get("event_type")
    event_type = _loose_value(event_type_raw)
    if event_type is None:
        return "Object missing required field `event_type`"
    if not isinstance(event_type, str):
        return f"event_type must be a string, got {_json_text(event_type_raw)}"
    if event_type not in _EVENT_TYPES[family]:
        if any(event_type in types for types in _EVENT_TYPES.values()):
            return f"event_type {event_type!r} is not allowed on the {family} topic"
        return f"unknown event_type {event_type!r}"

    message = str(error)
    # The contract counts a null field as absent: say so in the same words as a missing one.
    null = _NULL_REQUIRED.fullmatch(message)
    if null:
        path, field = null.groups()
        where = "" if path == "$" else f" - at `{path}`"
        return f"Object missing required field `{field}`{where}"
    return message


def _loose_value(raw: msgspec.Raw | None) -> Any:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        # Valid JSON that msgspec cannot hold (1e400, deep nesting): not a usable value.
        return _UNREADABLE


def _json_text(raw: msgspec.Raw | None) -> str:
    return bytes(raw or b"").decode("utf-8")


EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "event_id",
    "event_type",
    "occurred_at",
    "source",
    "shipment_id",
    "site_id",
    "lat",
    "lon",
    "origin_site_id",
    "destination_site_id",
    "carrier_id",
    "mode",
    "planned_departure",
    "planned_arrival",
    "lines",
    "damaged_quantity",
    "speed_kmh",
    "heading_deg",
    "eta",
    "reason",
    "code",
    "severity",
    "message",
    "estimated_delay_minutes",
    "sku",
    "on_hand",
    "delta",
)
_LINES_COLUMN: Final = EVENT_COLUMNS.index("lines")

# Per event class, the attribute read for each column (None: the event has no such field).
_ROW_ATTRIBUTES: Final[dict[type[Event], tuple[str | None, ...]]] = {
    cls: tuple(
        column if column == "event_type" or column in cls.__struct_fields__ else None
        for column in EVENT_COLUMNS
    )
    for classes in _EVENT_CLASSES.values()
    for cls in classes
}


def to_row(event: Event) -> tuple[Any, ...]:
    """One tuple in EVENT_COLUMNS order; lines become `{"sku", "quantity"}` dicts."""
    row = [
        None if attribute is None else getattr(event, attribute)
        for attribute in _ROW_ATTRIBUTES[type(event)]
    ]
    lines = row[_LINES_COLUMN]
    if lines is not None:
        row[_LINES_COLUMN] = [{"sku": line.sku, "quantity": line.quantity} for line in lines]
    return tuple(row)


_EVENT_TYPE_COLUMN: Final = EVENT_COLUMNS.index("event_type")
# Per event class: the columns read from each event (event_type, the same for the whole
# class, is not) and one C-level getter returning them as a tuple.
_COLUMN_GETTERS: Final[dict[type[Event], tuple[tuple[int, ...], Callable[[Event], Any]]]] = {
    cls: (
        tuple(i for i, a in enumerate(attributes) if a not in (None, "event_type")),
        operator.attrgetter(*(a for a in attributes if a not in (None, "event_type"))),
    )
    for cls, attributes in _ROW_ATTRIBUTES.items()
}


def to_columns(events: Sequence[Event]) -> Iterator[tuple[list[int], list[Sequence[Any] | None]]]:
    """Events grouped by class, as columns: (indexes into `events`, one sequence per
    EVENT_COLUMNS entry or None where the class has no such field).

    Column-wise, because building a tuple per event and transposing cost more than validating
    it; lines become `(sku, quantity)` tuples.
    """
    groups: dict[type[Event], list[int]] = {}
    for i, event in enumerate(events):
        groups.setdefault(type(event), []).append(i)
    for cls, indexes in groups.items():
        filled, getter = _COLUMN_GETTERS[cls]
        columns: list[Sequence[Any] | None] = [None] * len(EVENT_COLUMNS)
        columns[_EVENT_TYPE_COLUMN] = (str(cls.__struct_config__.tag),) * len(indexes)
        values = zip(*map(getter, (events[i] for i in indexes)), strict=True)
        for column, sequence in zip(filled, values, strict=True):
            if column == _LINES_COLUMN:
                sequence = tuple(
                    None if lines is None else [(line.sku, line.quantity) for line in lines]
                    for lines in sequence
                )
            columns[column] = sequence
        yield indexes, columns
