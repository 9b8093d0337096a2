"""Alert rules: the rules file, the debounced life cycle (`transitions`), conditions, messages,
the dead-letter rate, acknowledgements and the published event format."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.alert_acks import build_ack
from ingest.alerts import (
    OPENED,
    RESOLVED,
    UPDATED,
    Alert,
    AlertRules,
    Change,
    Condition,
    DeadLetterWindow,
    Pending,
    acknowledged,
    conditions_from_table,
    dead_letter_conditions,
    decode_ack,
    default_rules,
    duration_text,
    event_payload,
    load_rules,
    parse_rules,
    transitions,
)
from ingest.config import DEFAULT_ALERT_RULES
from ingest.contract import Rejected
from ingest.database import split_statements, sql_file
from ingest.errors import ConfigError
from ingest.store import DeadLetter

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def counter_ids() -> object:
    numbers = itertools.count(1)
    return lambda: f"A{next(numbers)}"


def rules_with(**changes: dict[str, object]) -> AlertRules:
    """The default rules with some keys of some rules changed (as in a rules file)."""
    return parse_rules(changes, "<test>")


def late(subject: str = "SHP-1", value: float = 90.0, severity: str = "warning") -> Condition:
    return Condition(
        rule="late",
        subject_type="shipment",
        subject_id=subject,
        severity=severity,
        message=f"{subject} is {value:.0f} min late",
        value=value,
        threshold=60.0,
        shipment_id=subject,
    )


# --- the rules file -------------------------------------------------------------------------


def test_the_shipped_rules_file_states_the_defaults() -> None:
    assert load_rules(DEFAULT_ALERT_RULES) == default_rules()


def test_missing_keys_take_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[late]\nopen_after_s = 5\n[engine]\neval_interval_s = 0.5\n")
    rules = load_rules(path)
    assert rules["late"].open_after_s == 5.0
    assert rules["late"].resolve_after_s == default_rules()["late"].resolve_after_s
    assert rules["at_risk"] == default_rules()["at_risk"]
    assert rules.engine.eval_interval_s == 0.5
    assert rules.engine.min_interval_s == default_rules().engine.min_interval_s


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("[lates]\nenabled = true\n", "rules.toml:lates: unknown section"),
        ("late = 3\n", "rules.toml:late: must be a table"),
        ("[late]\nopen_after = 3\n", "rules.toml:late.open_after: unknown key"),
        ("[late]\nenabled = 1\n", "rules.toml:late.enabled: must be true or false"),
        ("[late]\nseverity = 'urgent'\n", "rules.toml:late.severity: must be one of"),
        ("[late]\nseverity = 3\n", "rules.toml:late.severity: must be a string"),
        ("[late]\nopen_after_s = -1\n", "rules.toml:late.open_after_s: must be 0 or more"),
        ("[late]\nopen_after_s = 'soon'\n", "rules.toml:late.open_after_s: must be a number"),
        ("[late]\nopen_after_s = nan\n", "rules.toml:late.open_after_s: must be a number"),
        ("[engine]\neval_interval_s = 0\n", "rules.toml:engine.eval_interval_s: must be positive"),
        ("[webhook]\nretries = 1.5\n", "rules.toml:webhook.retries: must be a whole number"),
        ("[late]\nopen_after_s = \n", "rules.toml: not valid TOML"),
        (
            "[low_days_of_supply]\nmin_history_hours = 200\n",
            "rules.toml:low_days_of_supply.min_history_hours: longer than sales_window_days",
        ),
    ],
)
def test_a_bad_rules_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_rules(path)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_rules_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read alert rules"):
        load_rules(tmp_path / "nope.toml")


def test_time_scale_divides_event_time_thresholds_only() -> None:
    rules = default_rules()
    scaled = rules.scaled(60)
    assert scaled["stale_tracker"]["stale_after_minutes"] == 1.0
    assert scaled["late"]["critical_delay_minutes"] == 4.0
    assert scaled["late"].update_min_change == rules["late"].update_min_change / 60
    days = scaled["low_days_of_supply"]
    assert days["threshold_days"] == rules["low_days_of_supply"]["threshold_days"] / 60
    # debounce (processing time) and the dead-letter rate (a share) are not event time
    assert scaled["late"].open_after_s == rules["late"].open_after_s
    assert scaled["dead_letter_rate"] == rules["dead_letter_rate"]
    assert scaled.engine == rules.engine
    with pytest.raises(ConfigError):
        load_rules(DEFAULT_ALERT_RULES, time_scale=0)


# --- transitions: open, update, resolve, debounce ---------------------------------------------


def run(
    rules: AlertRules, timeline: list[tuple[float, list[Condition]]]
) -> tuple[list[tuple[float, Change]], dict[tuple[str, str], Alert]]:
    """Feed evaluations in order; returns every change with its time and the open alerts."""
    open_alerts: dict[tuple[str, str], Alert] = {}
    pending: dict[tuple[str, str], Pending] = {}
    new_id = counter_ids()
    seen: list[tuple[float, Change]] = []
    for seconds, conditions in timeline:
        changes, pending = transitions(open_alerts, pending, conditions, at(seconds), rules, new_id)
        for change in changes:
            seen.append((seconds, change))
            if change.event_type == RESOLVED:
                del open_alerts[change.alert.key]
            else:
                open_alerts[change.alert.key] = change.alert
    return seen, open_alerts


def test_opens_once_after_the_condition_held_open_after_s() -> None:
    rules = rules_with(late={"open_after_s": 30})
    changes, open_alerts = run(rules, [(s, [late()]) for s in range(0, 100, 5)])
    assert [(s, c.event_type) for s, c in changes] == [(30, OPENED)]
    alert = changes[0][1].alert
    assert (alert.state, alert.revision, alert.opened_at, alert.alert_id) == (
        "open",
        1,
        at(30),
        "A1",
    )
    assert open_alerts == {("late", "SHP-1"): alert}


def test_a_condition_shorter_than_the_debounce_opens_nothing() -> None:
    rules = rules_with(late={"open_after_s": 30})
    flicker = [(s, [late()] if (s // 20) % 2 == 0 else []) for s in range(0, 300, 5)]
    changes, open_alerts = run(rules, flicker)
    assert changes == [] and open_alerts == {}


def test_zero_debounce_opens_and_resolves_at_once() -> None:
    rules = rules_with(late={"open_after_s": 0, "resolve_after_s": 0})
    changes, _ = run(rules, [(0, [late()]), (5, []), (10, [late()])])
    assert [(s, c.event_type) for s, c in changes] == [(0, OPENED), (5, RESOLVED), (10, OPENED)]
    assert changes[0][1].alert.alert_id != changes[2][1].alert.alert_id


def test_updates_on_a_material_change_only() -> None:
    rules = rules_with(late={"open_after_s": 0, "update_min_change": 15})
    changes, open_alerts = run(
        rules,
        [
            (0, [late(value=90)]),
            (5, [late(value=100)]),  # +10: not material
            (10, [late(value=106)]),  # +16 from the published 90: material
            (15, [late(value=110)]),
            (20, [late(value=110, severity="critical")]),  # severity: always material
        ],
    )
    assert [(s, c.event_type) for s, c in changes] == [(0, OPENED), (10, UPDATED), (20, UPDATED)]
    assert [c.alert.revision for _, c in changes] == [1, 2, 3]
    final = open_alerts[("late", "SHP-1")]
    assert (final.value, final.severity, final.opened_at, final.updated_at) == (
        110,
        "critical",
        at(0),
        at(20),
    )
    assert final.message == "SHP-1 is 110 min late"


def test_a_new_detail_updates_even_with_the_same_value() -> None:
    rules = default_rules()
    first = Condition("critical_exception", "shipment", "SHP-1", "critical", "m1", 60, None, "t1")
    second = dataclasses.replace(first, detail="t2", message="m2")
    changes, _ = run(rules, [(0, [first]), (5, [first]), (10, [second])])
    assert [(s, c.event_type) for s, c in changes] == [(0, OPENED), (10, UPDATED)]


def test_resolves_after_the_condition_was_gone_for_resolve_after_s() -> None:
    rules = rules_with(late={"open_after_s": 0, "resolve_after_s": 60})
    timeline = [(0, [late()])] + [(s, []) for s in range(5, 200, 5)]
    changes, open_alerts = run(rules, timeline)
    assert [(s, c.event_type) for s, c in changes] == [(0, OPENED), (65, RESOLVED)]
    resolved = changes[1][1].alert
    assert (resolved.state, resolved.resolved_at, resolved.revision) == ("resolved", at(65), 2)
    assert open_alerts == {}


def test_a_condition_back_during_the_resolve_debounce_keeps_the_alert() -> None:
    rules = rules_with(late={"open_after_s": 0, "resolve_after_s": 60})
    timeline = [(0, [late()]), (30, []), (50, [late()]), (70, []), (125, []), (130, [])]
    changes, _ = run(rules, timeline)
    assert [(s, c.event_type) for s, c in changes] == [(0, OPENED), (130, RESOLVED)]


def test_subjects_and_rules_are_independent() -> None:
    rules = rules_with(late={"open_after_s": 0}, at_risk={"open_after_s": 0})
    risk = dataclasses.replace(late("SHP-1"), rule="at_risk", severity="info")
    changes, open_alerts = run(rules, [(0, [late("SHP-1"), late("SHP-2"), risk])])
    assert len(changes) == 3
    assert set(open_alerts) == {("late", "SHP-1"), ("late", "SHP-2"), ("at_risk", "SHP-1")}


def test_a_disabled_rule_resolves_its_open_alerts() -> None:
    # A disabled rule's conditions are never produced (the SQL and the engine skip them).
    rules = rules_with(late={"open_after_s": 0, "resolve_after_s": 0})
    opened, open_alerts = run(rules, [(0, [late()])])
    off = rules_with(late={"enabled": False, "resolve_after_s": 0})
    changes, _pending = transitions(open_alerts, {}, [], at(10), off)
    assert [c.event_type for c in changes] == [RESOLVED]


events_in_time = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=20),  # seconds since the previous evaluation
        st.frozensets(st.sampled_from(["SHP-1", "SHP-2", "SHP-3"]), max_size=3),  # present
        st.integers(min_value=60, max_value=200),  # delay minutes of every present subject
        st.booleans(),  # critical?
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=events_in_time,
    open_after=st.sampled_from([0, 5, 17, 30]),
    resolve_after=st.sampled_from([0, 5, 23, 60]),
)
def test_life_cycle_properties(
    steps: list[tuple[int, frozenset[str], int, bool]], open_after: int, resolve_after: int
) -> None:
    """Whatever the conditions do: at most one open alert per subject; each alert opens once,
    is updated, resolves at most once and never changes after; it opens only after the
    condition held for open_after_s and resolves only after it was gone for resolve_after_s."""
    rules = rules_with(
        late={"open_after_s": open_after, "resolve_after_s": resolve_after, "update_min_change": 15}
    )
    timeline = []
    clock = 0
    for gap, present, value, critical in steps:
        clock += gap
        severity = "critical" if critical else "warning"
        timeline.append((clock, [late(s, value, severity) for s in sorted(present)]))
    changes, open_alerts = run(rules, timeline)

    presence = {
        f"SHP-{n}": [(t, any(c.subject_id == f"SHP-{n}" for c in cs)) for t, cs in timeline]
        for n in "123"
    }
    history: dict[str, list[str]] = {}
    open_by_subject: dict[str, str] = {}
    for seconds, change in changes:
        alert = change.alert
        events = history.setdefault(alert.alert_id, [])
        assert RESOLVED not in events, "an alert changed after it resolved"
        if change.event_type == OPENED:
            assert not events and alert.subject_id not in open_by_subject
            open_by_subject[alert.subject_id] = alert.alert_id
            assert held(presence[alert.subject_id], seconds, open_after, True)
        else:
            assert events and open_by_subject[alert.subject_id] == alert.alert_id
        if change.event_type == RESOLVED:
            del open_by_subject[alert.subject_id]
            assert held(presence[alert.subject_id], seconds, resolve_after, False)
        assert alert.revision == len(events) + 1
        events.append(change.event_type)
    assert {k[1]: a.alert_id for k, a in open_alerts.items()} == open_by_subject

    # And it catches up: a condition that held long enough at the end has an open alert.
    end = timeline[-1][0]
    for subject, seen in presence.items():
        if held(seen, end, max(open_after, resolve_after), True):
            assert subject in open_by_subject
        if held(seen, end, max(open_after, resolve_after), False):
            assert subject not in open_by_subject


def held(seen: list[tuple[int, bool]], until: float, seconds: float, state: bool) -> bool:
    """The condition was `state` at every evaluation from some evaluation at or before
    `until - seconds` up to `until`."""
    upto = [(t, s) for t, s in seen if t <= until]
    start = None
    for t, s in reversed(upto):
        if s != state:
            break
        start = t
    return start is not None and until - start >= seconds


# --- conditions and messages ----------------------------------------------------------------


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = dict.fromkeys(
        (
            "shipment_id", "site_id", "sku", "carrier_id", "origin_site_id",
            "destination_site_id", "value", "threshold", "detail", "status", "place",
            "origin_place", "carrier_name", "at", "code", "note", "on_hand", "in_transit",
            "daily_sales",
        )
    )  # fmt: skip
    base.update(subject_type="shipment", subject_id="SHP-7", shipment_id="SHP-7")
    base.update(values)
    return base


def conditions(
    rows: list[dict[str, object]],
    rules: AlertRules,
    now: dt.datetime,
    known: dict[tuple[str, str], Alert] | None = None,
) -> list[Condition]:
    """conditions_from_table over rows as alert_conditions.sql returns them (Arrow columns)."""
    return conditions_from_table(pa.Table.from_pylist(rows), rules, now, known)


def test_conditions_get_severity_and_a_sentence() -> None:
    rules = default_rules()
    now = at(0)
    rows = [
        row(rule="late", value=95.0, threshold=60.0, place="Tyre Hub Lyon", at=at(300)),
        row(rule="late", value=300.0, threshold=60.0, place="Tyre Hub Lyon", status="ARRIVED"),
        row(rule="at_risk", value=70.0, threshold=60.0, place="Lyon", at=at(86400 * 2)),
        row(
            rule="critical_exception", value=300.0, detail="d", carrier_name="Nordwind",
            origin_place="Hannover", place="Lyon", at=at(-60), code="BREAKDOWN",
            note="tractor unit breakdown",
        ),
        row(
            rule="stale_tracker", value=75.0, threshold=60.0, carrier_name="Nordwind",
            at=at(-4500),
        ),
        row(
            rule="low_days_of_supply", subject_type="site_sku", subject_id="DIS-1/P-1",
            shipment_id=None, site_id="DIS-1", sku="P-1", value=1.5, threshold=2.0,
            place="Reifen Berlin", on_hand=30, in_transit=15, daily_sales=30.0,
        ),
        row(
            rule="low_days_of_supply", subject_type="site_sku", subject_id="DIS-1/P-2",
            shipment_id=None, site_id="DIS-1", sku="P-2", value=0.0, threshold=2.0,
            place="Reifen Berlin", on_hand=0, in_transit=0, daily_sales=12.0,
        ),
    ]  # fmt: skip
    found = conditions(rows, rules, now)
    assert [(c.rule, c.severity) for c in found] == [
        ("late", "warning"),
        ("late", "critical"),  # beyond critical_delay_minutes (240)
        ("at_risk", "info"),
        ("critical_exception", "critical"),
        ("stale_tracker", "warning"),
        ("low_days_of_supply", "warning"),
        ("low_days_of_supply", "critical"),  # below critical_below_days (0.5)
    ]
    assert [c.message for c in found] == [
        "SHP-7 to Tyre Hub Lyon is 95 min late (ETA 08:05 UTC)",
        "SHP-7 arrived at Tyre Hub Lyon 5 h late",
        "SHP-7 to Lyon is expected 70 min late (ETA 04 Mar 08:00 UTC)",
        "SHP-7 (Nordwind, Hannover -> Lyon) reported a critical BREAKDOWN: tractor unit "
        "breakdown, about 5 h delay at 07:59 UTC",
        "SHP-7 (Nordwind) has sent no position for 75 min (last 06:45 UTC)",
        "Reifen Berlin has 36 h of supply of P-1 (30 on hand + 15 in transit, selling 30 a day)",
        "Reifen Berlin has no P-2 left (0 on hand + 0 in transit, selling 12 a day)",
    ]
    assert found[5].key == ("low_days_of_supply", "DIS-1/P-1")
    assert (found[5].site_id, found[5].sku, found[5].shipment_id) == ("DIS-1", "P-1", None)


def test_an_unchanged_open_alert_keeps_its_message_and_a_changed_one_gets_a_new_one() -> None:
    """conditions_from_rows writes sentences only where transitions will use them; what it
    returns leads to the same changes as conditions with fresh sentences everywhere."""
    rules = default_rules()  # late: update_min_change 15 minutes
    first = row(rule="late", value=95.0, threshold=60.0, at=at(300))
    (alert,) = [c.alert for c in transitions(
        {}, {}, conditions([first], rules, at(0)), at(0),
        rules_with(late={"open_after_s": 0.0}), counter_ids(),
    )[0]]  # fmt: skip
    known = {alert.key: alert}
    later = at(600)
    same = row(rule="late", value=100.0, threshold=60.0, at=at(300))  # +5 min: not material
    moved = row(rule="late", value=125.0, threshold=60.0, at=at(300))  # +30 min: an update
    (kept,) = conditions([same], rules, later, known)
    assert (
        kept.message == alert.message == "SHP-7 to its destination is 95 min late (ETA 08:05 UTC)"
    )
    (fresh,) = conditions([moved], rules, later, known)
    assert fresh.message == "SHP-7 to its destination is 2 h 5 min late (ETA 08:05 UTC)"
    for r in (same, moved):
        lazy = transitions(known, {}, conditions([r], rules, later, known), later, rules)
        eager = transitions(known, {}, conditions([r], rules, later), later, rules)
        assert [(c.event_type, c.alert.message) for c in lazy[0]] == [
            (c.event_type, c.alert.message) for c in eager[0]
        ]
    assert [c.event_type for c in lazy[0]] == [UPDATED]


@pytest.mark.parametrize(
    "minutes,text",
    [(0.2, "under a minute"), (59.6, "60 min"), (119, "119 min"), (125, "2 h 5 min"),
     (180, "3 h"), (3000, "2.1 days")],
)  # fmt: skip
def test_duration_text(minutes: float, text: str) -> None:
    assert duration_text(minutes) == text


def test_dead_letter_rate_over_a_window() -> None:
    rules = default_rules()  # threshold 2 %, window 60 s, at least 100 messages
    window = DeadLetterWindow()
    dead = [DeadLetter("ship", 0, i, "bad", None, b"x") for i in range(5)]
    window.record(0.0, {("ship", 0): 0, ("inv", 1): 10}, {("ship", 0): 100, ("inv", 1): 60}, dead)
    window.record(30.0, {("ship", 1): 0}, {("ship", 1): 100}, [])
    assert window.totals(59.0, 60) == {"ship": (200, 5), "inv": (50, 0)}
    found = dead_letter_conditions(window.totals(59.0, 60), rules)
    assert [(c.subject_id, c.value, c.subject_type) for c in found] == [("ship", 0.025, "pipeline")]
    assert found[0].message == "ship: 2.5% of messages rejected over the last 1 min (5 of 200)"
    # The first batch leaves the window: 0 of 100 rejected.
    assert dead_letter_conditions(window.totals(61.0, 60), rules) == []
    # Too few messages for a verdict.
    small = DeadLetterWindow()
    small.record(0.0, {("ship", 0): 0}, {("ship", 0): 10}, dead)
    assert dead_letter_conditions(small.totals(1.0, 60), rules) == []
    off = rules_with(dead_letter_rate={"enabled": False})
    assert dead_letter_conditions(window.totals(59.0, 60), off) == []


# --- acknowledgements -------------------------------------------------------------------------


def open_alert() -> Alert:
    return Alert(
        alert_id="A1",
        rule="late",
        severity="warning",
        subject_type="shipment",
        subject_id="SHP-1",
        message="SHP-1 is late",
        state="open",
        opened_at=at(0),
        updated_at=at(0),
        revision=1,
    )


def test_the_dashboards_ack_decodes_and_the_first_ack_wins() -> None:
    value = build_ack("A1", "pat", "on it", at(12.3456))
    ack = decode_ack(value)
    assert (ack.alert_id, ack.acked_by, ack.note) == ("A1", "pat", "on it")
    acked = acknowledged(open_alert(), ack, at(20))
    assert acked is not None
    assert (acked.acked_by, acked.acked_at, acked.ack_note, acked.revision) == (
        "pat",
        at(12.345),
        "on it",
        2,
    )
    assert acked.updated_at == at(20) and acked.state == "open"
    assert acknowledged(acked, decode_ack(build_ack("A1", "ana", None, at(30))), at(31)) is None


@pytest.mark.parametrize(
    "value,fragment",
    [
        (b"", "empty message value"),
        (b"\xff", "not valid UTF-8"),
        (b"{nope", "invalid JSON: "),
        (b"[1]", "Expected `object`"),
        (b'{"schema_version": 1}', "missing required field"),
        (
            b'{"schema_version":1,"event_id":"e","event_type":"alert.ack","alert_id":"A1",'
            b'"acked_by":"","acked_at":"2026-03-02T08:00:00Z"}',
            "acked_by",
        ),
        (
            b'{"schema_version":1,"event_id":"e","event_type":"alert.ack","alert_id":"A1",'
            b'"acked_by":"pat","acked_at":"2026-03-02T08:00:00"}',
            "acked_at",
        ),
        (
            b'{"schema_version":1,"event_id":"e","event_type":"alert.nack","alert_id":"A1",'
            b'"acked_by":"pat","acked_at":"2026-03-02T08:00:00Z"}',
            "event_type",
        ),
        (
            b'{"schema_version":1,"event_id":"e","event_type":"alert.ack","alert_id":"A1",'
            b'"acked_by":"pat","acked_at":"2026-03-02T08:00:00Z","note":"' + b"x" * 501 + b'"}',
            "note",
        ),
    ],
)
def test_invalid_acks_are_rejected_with_a_reason(value: bytes, fragment: str) -> None:
    with pytest.raises(Rejected) as error:
        decode_ack(value)
    assert fragment in error.value.reason


# --- the published event ----------------------------------------------------------------------


def test_event_payload_carries_every_column_of_the_alerts_table() -> None:
    con = duckdb.connect()
    for statement in split_statements(sql_file("003_alerts.sql")):
        con.execute(statement)
    columns = [r[0] for r in con.execute("DESCRIBE alerts").fetchall()]
    alert = dataclasses.replace(open_alert(), opened_at=at(0.0004), value=95.5, threshold=60.0)
    payload = orjson.loads(event_payload("E1", Change(OPENED, alert), at(1)))
    assert set(payload) == {"schema_version", "event_id", "event_type", "occurred_at", "alert"}
    assert (payload["schema_version"], payload["event_id"], payload["event_type"]) == (
        1,
        "E1",
        "alert.opened",
    )
    assert payload["occurred_at"] == "2026-03-02T08:00:01.000Z"
    assert sorted(payload["alert"]) == sorted(columns)
    assert payload["alert"]["opened_at"] == "2026-03-02T08:00:00.000Z"
    assert payload["alert"]["resolved_at"] is None and payload["alert"]["value"] == 95.5
