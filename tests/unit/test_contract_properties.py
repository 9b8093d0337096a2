"""Properties of ingest.contract.validate under hypothesis: it never raises anything but Rejected
whatever the bytes or JSON; a reason is one bounded line that names the broken field; every real
simulator event round-trips; and a valid event with one field broken is always rejected."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest.contract import EVENT_COLUMNS, INVENTORY, SHIPMENTS, Rejected, to_row, validate
from ingest.fuzz import ENVELOPE_FIELDS as ENVELOPE
from ingest.fuzz import REQUIRED_FIELDS as REQUIRED
from ingest.network import load_network
from ingest.simulator import SimulationSettings, simulate

FAMILIES = (SHIPMENTS, INVENTORY)
MAX_REASON = 300  # reasons go into a Kafka header and a table cell
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The contract's fields by the kind of value they hold (EVENTS.md), written out independently.
ID_FIELDS = ("event_id", "shipment_id", "site_id", "sku", "origin_site_id",
             "destination_site_id", "carrier_id")  # fmt: skip
TIME_FIELDS = ("occurred_at", "planned_departure", "planned_arrival", "eta")
INT_FIELDS = ("on_hand", "delta", "damaged_quantity", "estimated_delay_minutes")
FLOAT_FIELDS = ("lat", "lon", "speed_kmh", "heading_deg")
ENUM_FIELDS = ("mode", "code", "severity")
EVENT_TYPES = tuple(sorted(REQUIRED))


@cache
def simulated() -> tuple[tuple[str, bytes], ...]:
    """Real simulator messages covering every event type: (family, value)."""
    start = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    sim = SimulationSettings(seed=7, rate=200.0, time_scale=3600.0, start=start, duration_s=60.0)
    per_type: dict[str, list[tuple[str, bytes]]] = {}
    for message in simulate(sim, load_network()):
        event_type = orjson.loads(message.value)["event_type"]
        per_type.setdefault(event_type, []).append((message.family, message.value))
    assert set(per_type) == set(EVENT_TYPES), "the simulator covers every event type"
    return tuple(m for messages in per_type.values() for m in messages[:40])


def real_events() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.sampled_from(simulated()).map(lambda m: (m[0], orjson.loads(m[1])))


def assert_good_reason(reason: str) -> None:
    assert reason, "a reason is never empty"
    assert len(reason.splitlines()) == 1, f"one line: {reason!r}"
    assert len(reason) <= MAX_REASON


def outcome(family: str, value: bytes | None) -> Rejected | None:
    """Validate; only Rejected may come out (anything else fails the test by propagating)."""
    try:
        event = validate(family, value)
    except Rejected as e:
        assert_good_reason(e.reason)
        return e
    assert len(to_row(event)) == len(EVENT_COLUMNS)
    assert 1 <= len(event.event_id) <= 64
    return None


# -- never anything but Rejected ------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.floats()  # NaN and infinities too: json.dumps writes them as bare tokens
    | st.text()
)
json_documents = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Objects that look like events, so the values reach the typed checks behind the envelope.
field_names = st.sampled_from(
    sorted(
        {
            *ENVELOPE,
            *ID_FIELDS,
            *TIME_FIELDS,
            *INT_FIELDS,
            *FLOAT_FIELDS,
            *ENUM_FIELDS,
            "lines",
            "reason",
            "message",
        }
    )  # fmt: skip
)
event_like = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(EVENT_TYPES) | st.text(max_size=20),
        "schema_version": st.just(1) | json_scalars,
    },
    optional={name: json_documents for name in (*ENVELOPE[:1], *ENVELOPE[3:])},
).flatmap(
    lambda base: st.dictionaries(field_names, json_documents, max_size=8).map(
        lambda extra: {**base, **extra}
    )
)


@PROPERTY
@given(st.sampled_from(FAMILIES), st.none() | st.binary(max_size=2000))
def test_arbitrary_bytes_are_an_event_or_rejected(family: str, value: bytes | None) -> None:
    outcome(family, value)


@PROPERTY
@given(st.sampled_from(FAMILIES), json_documents | event_like)
def test_arbitrary_json_is_an_event_or_rejected(family: str, document: Any) -> None:
    outcome(family, json.dumps(document).encode())


@PROPERTY
@given(st.sampled_from(FAMILIES), st.integers(min_value=1, max_value=200_000), st.booleans())
def test_any_nesting_depth_is_rejected_not_a_crash(family: str, depth: int, inside: bool) -> None:
    nested = b"[" * depth + b"]" * depth
    value = b'{"event_id": ' + nested + b"}" if inside else nested
    assert outcome(family, value) is not None


@PROPERTY
@given(
    real_events(),
    st.lists(
        st.tuples(st.integers(min_value=0), st.binary(min_size=0, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_real_events_with_bytes_changed_are_an_event_or_rejected(
    message: tuple[str, dict[str, Any]], edits: list[tuple[int, bytes]]
) -> None:
    family, event = message
    value = bytearray(orjson.dumps(event))
    for position, replacement in edits:
        at = position % (len(value) + 1)
        value[at : at + len(replacement)] = replacement
    outcome(family, bytes(value))


# -- real events round-trip -----------------------------------------------------------------


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("z", "Z"))


def test_every_simulated_event_round_trips() -> None:
    for family, value in simulated():
        event = orjson.loads(value)
        row = dict(zip(EVENT_COLUMNS, to_row(validate(family, value)), strict=True))
        for name, expected in event.items():
            if name == "schema_version":
                continue
            got = row[name]
            if name in TIME_FIELDS:
                assert got == _instant(expected) and got.utcoffset() == dt.timedelta(0), name
            elif name in FLOAT_FIELDS:
                assert got == float(expected), name
            else:
                assert got == expected, name
        assert {k for k, v in row.items() if v is not None} == set(event) - {"schema_version"}


# -- a broken field is rejected, and the reason names it -------------------------------------


def wrong_type_for(name: str) -> st.SearchStrategy[Any]:
    containers = st.lists(st.integers(), max_size=2) | st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=2
    )
    if name in INT_FIELDS:
        non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda f: not f.is_integer()
        )
        return non_integral | st.text() | st.booleans() | containers
    if name in FLOAT_FIELDS:
        return st.text() | st.booleans() | containers
    if name == "lines":
        return st.text() | st.integers() | st.booleans() | st.dictionaries(st.text(), st.text())
    finite = st.floats(allow_nan=False, allow_infinity=False)  # NaN is no JSON at all
    return st.integers() | finite | st.booleans() | containers


def finite_floats(**bounds: float) -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


def bad_value_for(name: str, event_type: str) -> st.SearchStrategy[Any]:
    if name in ID_FIELDS:
        return st.just("") | st.text(min_size=65, max_size=200).filter(lambda t: len(t) > 64)
    if name in TIME_FIELDS:
        naive = st.datetimes(
            min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)
        ).map(lambda d: d.isoformat())  # no offset
        return naive | st.sampled_from(["", "2026-02-30T08:00:00Z", "2026-03-02T08:00:00+25:00"])
    if name in ("lat", "lon", "heading_deg", "speed_kmh"):
        low, high = {"lat": (-90, 90), "lon": (-180, 180), "heading_deg": (0, 360)}.get(
            name, (0, None)
        )
        below = finite_floats(max_value=low - 1e-6)
        return below if high is None else below | finite_floats(min_value=high + 1e-6)
    if name == "delta":
        return st.just(0)
    if name in INT_FIELDS:
        return st.integers(max_value=-1)
    if name in ENUM_FIELDS or (name == "reason" and event_type == "inventory.adjusted"):
        allowed = {"road", "rail", "sea", "TRAFFIC", "WEATHER", "BREAKDOWN", "CUSTOMS", "STRIKE",
                   "DAMAGE", "OTHER", "info", "warning", "critical", "produced", "sold",
                   "scrapped", "correction"}  # fmt: skip
        return st.text(max_size=12).filter(lambda t: t not in allowed)
    if name == "schema_version":
        return st.integers().filter(lambda v: v != 1) | st.sampled_from(["1", 1.0, True])
    if name == "lines" and event_type == "shipment.created":
        return st.just([])
    raise AssertionError(f"no bad value for {name}")


@st.composite
def broken_events(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """A real event with one field broken: (family, event, the field's name)."""
    family, event = draw(real_events())
    event_type = event["event_type"]
    typed = [n for n in event if n in {*ID_FIELDS, *TIME_FIELDS, *INT_FIELDS, *FLOAT_FIELDS,
                                        *ENUM_FIELDS, "schema_version", "lines"}]  # fmt: skip
    if event_type == "inventory.adjusted":
        typed.append("reason")
    how = draw(st.sampled_from(["missing", "null", "wrong_type", "bad_value"]))
    if how in ("missing", "null"):
        name = draw(st.sampled_from((*ENVELOPE, *REQUIRED[event_type])))
        if how == "missing":
            del event[name]
        else:
            event[name] = None  # null counts as absent
        return family, event, name
    name = draw(st.sampled_from(typed))
    if how == "bad_value":
        if name == "lines" and event_type != "shipment.created":
            how = "wrong_type"
        elif name == "lines":
            event[name] = draw(bad_value_for(name, event_type))
            return family, event, name
    if how == "wrong_type" and name != "schema_version":
        event[name] = draw(wrong_type_for(name))
    else:
        event[name] = draw(bad_value_for(name, event_type))
    return family, event, name


@PROPERTY
@given(broken_events())
def test_a_broken_field_is_rejected_with_a_reason_naming_it(
    broken: tuple[str, dict[str, Any], str],
) -> None:
    family, event, name = broken
    rejected = outcome(family, json.dumps(event).encode())
    assert rejected is not None, f"{name} broken but accepted: {event.get(name)!r}"
    assert name in rejected.reason, rejected.reason


@PROPERTY
@given(real_events())
def test_an_event_on_the_other_topic_is_rejected_naming_event_type(
    message: tuple[str, dict[str, Any]],
) -> None:
    family, event = message
    other = INVENTORY if family == SHIPMENTS else SHIPMENTS
    rejected = outcome(other, orjson.dumps(event))
    assert rejected is not None and "event_type" in rejected.reason


@PROPERTY
@given(real_events(), st.text(min_size=0, max_size=80))
def test_an_unknown_event_type_is_rejected_in_one_line(
    message: tuple[str, dict[str, Any]], event_type: str
) -> None:
    family, event = message
    assume(event_type not in REQUIRED)
    rejected = outcome(family, json.dumps({**event, "event_type": event_type}).encode())
    assert rejected is not None and "event_type" in rejected.reason


@pytest.mark.parametrize("family", FAMILIES)
def test_reasons_quoting_input_stay_one_line(family: str) -> None:
    for separator in ("\n", "\r", "\u2028", "\x85", "\x1e"):
        value = json.dumps({"schema_version": 1, "event_type": f"x{separator}y" * 200}).encode()
        rejected = outcome(family, value)
        assert rejected is not None
