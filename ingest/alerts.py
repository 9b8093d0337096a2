"""Alerts: the rules (data/alert_rules.toml), their debounced life cycle, acks, the engine.

The worker's `AlertEngine` evaluates the rules after stored batches and on a timer: one SQL
(`sql/alert_conditions.sql`, the dashboard's own definitions of late, at risk and days of
supply) plus the dead-letter rate it samples itself give the conditions that hold now; the pure
`transitions` compares them with the open alerts and the pending (debounced) ones and says which
alerts open, update or resolve. The engine stores those alert states and events in one
transaction, then publishes the events to the alerts topic and offers them to the webhook.

Delivery: the table is exact; the topic is at least once (the events wait in `alert_history`
with `published_at` null until the broker confirms them, and are sent again after a crash or a
failed delivery); the webhook is best effort (bounded queue, retries, then given up).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import math
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson
import pyarrow as pa
from confluent_kafka import KafkaError, Message
from msgspec import Meta, Struct

from ingest.config import IngestSettings, KafkaSettings
from ingest.consumer import position
from ingest.contract import Rejected
from ingest.errors import BrokerError, ConfigError
from ingest.kafka import EventProducer
from ingest.store import DeadLetter, Store
from ingest.webhook import Webhook, WebhookSettings

log = logging.getLogger(__name__)

SEVERITIES: Final = ("info", "warning", "critical")
SCHEMA_VERSION: Final = 1
RETRY_PUBLISH_S: Final = 5.0
BOOKKEEPING_INTERVAL_S: Final = 1.0
# The rules take at most this share of the time: on a large store an evaluation costs 100-500
# ms, which every second would keep a core busy the batches need.
EVALUATION_DUTY: Final = 0.2
# Changes stored and published per turn of the worker's loop. A change costs about 0.1 ms (its
# row, its event's JSON, the writes, the publication); thousands come at once when rules open
# on a large network or a clock-driven value moves for every subject together (stale trackers
# every 30 minutes: 4,500 updates at 10M events, 650 ms in one go, held every batch behind it).
CHANGES_PER_TURN: Final = 250
OPENED, UPDATED, RESOLVED, ACKNOWLEDGED = (
    "alert.opened",
    "alert.updated",
    "alert.resolved",
    "alert.acknowledged",
)

# --- the rules file ----------------------------------------------------------------------------

# Keys every rule has, with their defaults (data/alert_rules.toml documents them).
_COMMON: Final[dict[str, Any]] = {
    "enabled": True,
    "open_after_s": 0.0,
    "resolve_after_s": 30.0,
    "update_min_change": 0.0,
}


@dataclass(frozen=True)
class RuleSpec:
    """What a rule is: its subject, its defaults, which thresholds are event-time durations."""

    subject_type: str
    severity: str
    thresholds: dict[str, float]
    debounce: dict[str, float]
    scaled: frozenset[str]  # thresholds divided by the time scale
    value_scales: bool  # the value is an event-time quantity (update_min_change scales too)


RULE_SPECS: Final[dict[str, RuleSpec]] = {
    "late": RuleSpec(
        "shipment",
        "warning",
        {"critical_delay_minutes": 240.0},
        {"open_after_s": 30.0, "resolve_after_s": 60.0, "update_min_change": 15.0},
        frozenset({"critical_delay_minutes"}),
        value_scales=True,
    ),
    "at_risk": RuleSpec(
        "shipment",
        "info",
        {},
        {"open_after_s": 300.0, "resolve_after_s": 60.0, "update_min_change": 15.0},
        frozenset(),
        value_scales=True,
    ),
    "critical_exception": RuleSpec(
        "shipment",
        "critical",
        {"max_age_minutes": 240.0},
        {"open_after_s": 0.0, "resolve_after_s": 30.0, "update_min_change": 0.0},
        frozenset({"max_age_minutes"}),
        value_scales=True,
    ),
    "stale_tracker": RuleSpec(
        "shipment",
        "warning",
        {"stale_after_minutes": 60.0},
        {"open_after_s": 0.0, "resolve_after_s": 30.0, "update_min_change": 30.0},
        frozenset({"stale_after_minutes"}),
        value_scales=True,
    ),
    "low_days_of_supply": RuleSpec(
        "site_sku",
        "warning",
        {
            "threshold_days": 2.0,
            "critical_below_days": 0.5,
            "sales_window_days": 7.0,
            "min_history_hours": 12.0,
        },
        {"open_after_s": 300.0, "resolve_after_s": 300.0, "update_min_change": 0.5},
        frozenset(
            {"threshold_days", "critical_below_days", "sales_window_days", "min_history_hours"}
        ),
        value_scales=True,
    ),
    "dead_letter_rate": RuleSpec(
        "pipeline",
        "critical",
        {"threshold": 0.02, "window_s": 60.0, "min_messages": 100.0},
        {"open_after_s": 10.0, "resolve_after_s": 60.0, "update_min_change": 0.01},
        frozenset(),
        value_scales=False,
    ),
}
_ENGINE_DEFAULTS: Final[dict[str, Any]] = {
    "eval_interval_s": 5.0,
    "min_interval_s": 1.0,
    "slow_interval_s": 60.0,
    "evaluate_while_catching_up": False,
}
# Rules over stock and sales: they change slowly and cost the most, so they are evaluated every
# `slow_interval_s` only (their last conditions stand in between).
SLOW_RULES: Final = frozenset({"low_days_of_supply"})
_WEBHOOK_DEFAULTS: Final[dict[str, Any]] = {"retries": 3, "backoff_s": 1.0, "queue_size": 1000}
_POSITIVE: Final = frozenset(
    {
        "eval_interval_s",
        "min_interval_s",
        "slow_interval_s",
        "window_s",
        "sales_window_days",
        "queue_size",
    }
)


@dataclass(frozen=True)
class Rule:
    name: str
    enabled: bool
    severity: str
    open_after_s: float
    resolve_after_s: float
    update_min_change: float
    thresholds: Mapping[str, float]

    def __getitem__(self, threshold: str) -> float:
        return self.thresholds[threshold]


@dataclass(frozen=True)
class EngineSettings:
    eval_interval_s: float = 5.0
    min_interval_s: float = 1.0
    slow_interval_s: float = 60.0
    evaluate_while_catching_up: bool = False


@dataclass(frozen=True)
class WebhookTuning:
    retries: int = 3
    backoff_s: float = 1.0
    queue_size: int = 1000


@dataclass(frozen=True)
class AlertRules:
    """Every rule (all six always present; `enabled` turns one off) and the engine's timing."""

    rules: Mapping[str, Rule]
    engine: EngineSettings = field(default_factory=EngineSettings)
    webhook: WebhookTuning = field(default_factory=WebhookTuning)

    def __getitem__(self, name: str) -> Rule:
        return self.rules[name]

    def scaled(self, time_scale: float) -> AlertRules:
        """Event-time thresholds (and event-time update steps) divided by `time_scale`: the
        demo's simulator runs `time_scale` times faster than the road."""
        if time_scale == 1:
            return self
        rules = {}
        for name, rule in self.rules.items():
            spec = RULE_SPECS[name]
            rules[name] = dataclasses.replace(
                rule,
                thresholds={
                    k: v / time_scale if k in spec.scaled else v for k, v in rule.thresholds.items()
                },
                update_min_change=rule.update_min_change / time_scale
                if spec.value_scales
                else rule.update_min_change,
            )
        return dataclasses.replace(self, rules=rules)


def default_rules() -> AlertRules:
    return parse_rules({}, "<defaults>")


def load_rules(path: Path, time_scale: float = 1.0) -> AlertRules:
    """Read and check a rules file; a problem is one line: `file:key: what is wrong`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read alert rules {path}: {e.strerror}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ConfigError(f"alert time scale must be a positive number, got {time_scale}")
    return parse_rules(data, str(path)).scaled(time_scale)


def parse_rules(data: Mapping[str, Any], source: str) -> AlertRules:
    """Rules from a parsed TOML document (missing keys take their defaults)."""
    known = {*RULE_SPECS, "engine", "webhook"}
    for section, table in data.items():
        if section not in known:
            raise ConfigError(
                f"{source}:{section}: unknown section (known: {', '.join(sorted(known))})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{source}:{section}: must be a table ([{section}])")
    rules = {}
    for name, spec in RULE_SPECS.items():
        defaults = {
            **_COMMON,
            "severity": spec.severity,
            **spec.debounce,
            **spec.thresholds,
        }
        values = _checked(data.get(name, {}), defaults, f"{source}:{name}")
        if values["severity"] not in SEVERITIES:
            raise ConfigError(
                f"{source}:{name}.severity: must be one of {', '.join(SEVERITIES)}, "
                f"got {values['severity']!r}"
            )
        rules[name] = Rule(
            name=name,
            enabled=values["enabled"],
            severity=values["severity"],
            open_after_s=values["open_after_s"],
            resolve_after_s=values["resolve_after_s"],
            update_min_change=values["update_min_change"],
            thresholds={k: values[k] for k in spec.thresholds},
        )
    dos = rules["low_days_of_supply"]
    if dos["min_history_hours"] > dos["sales_window_days"] * 24:
        raise ConfigError(
            f"{source}:low_days_of_supply.min_history_hours: longer than sales_window_days "
            "(the history used never exceeds the window)"
        )
    engine = _checked(data.get("engine", {}), _ENGINE_DEFAULTS, f"{source}:engine")
    webhook = _checked(data.get("webhook", {}), _WEBHOOK_DEFAULTS, f"{source}:webhook")
    return AlertRules(rules, EngineSettings(**engine), WebhookTuning(**webhook))


def _checked(table: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The table's values over the defaults, each of the default's type and not negative."""
    values = dict(defaults)
    for key, value in table.items():
        if key not in defaults:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(defaults))})")
        default = defaults[key]
        if isinstance(default, bool | str):
            if type(value) is not type(default):
                kind = "true or false" if isinstance(default, bool) else "a string"
                raise ConfigError(f"{where}.{key}: must be {kind}, got {value!r}")
        elif isinstance(default, int):
            if type(value) is not int:
                raise ConfigError(f"{where}.{key}: must be a whole number, got {value!r}")
        else:
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ConfigError(f"{where}.{key}: must be a number, got {value!r}")
        if not isinstance(value, bool | str) and (value < 0 or (value == 0 and key in _POSITIVE)):
            relation = "positive" if key in _POSITIVE else "0 or more"
            raise ConfigError(f"{where}.{key}: must be {relation}, got {value!r}")
        values[key] = float(value) if isinstance(default, float) else value
    return values


# --- alerts and conditions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert's state: a row of the `alerts` table and the `alert` of every alert event."""

    alert_id: str
    rule: str
    severity: str
    subject_type: str
    subject_id: str
    message: str
    state: str  # 'open' | 'resolved'
    opened_at: dt.datetime
    updated_at: dt.datetime
    revision: int
    value: float | None = None
    threshold: float | None = None
    shipment_id: str | None = None
    site_id: str | None = None
    sku: str | None = None
    carrier_id: str | None = None
    origin_site_id: str | None = None
    destination_site_id: str | None = None
    resolved_at: dt.datetime | None = None
    acked_by: str | None = None
    acked_at: dt.datetime | None = None
    ack_note: str | None = None
    detail: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject_id)

    def row(self) -> dict[str, Any]:
        """The alert as a row of the `alerts` table (dataclasses.asdict is 10x slower)."""
        return {name: getattr(self, name) for name in ALERT_FIELDS}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        for name in ("opened_at", "updated_at", "resolved_at", "acked_at"):
            if values.get(name) is not None:
                values[name] = values[name].astimezone(dt.UTC)
        return cls(**values)


ALERT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Alert))


@dataclass(frozen=True)
class Condition:
    """A rule's condition holding now for one subject, with what an alert would say."""

    rule: str
    subject_type: str
    subject_id: str
    severity: str
    message: str
    value: float | None = None
    threshold: float | None = None
    detail: str | None = None
    shipment_id: str | None = None
    site_id: str | None = None
    sku: str | None = None
    carrier_id: str | None = None
    origin_site_id: str | None = None
    destination_site_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject_id)


@dataclass(frozen=True)
class Pending:
    """A debounce in progress: a condition seen since `since` without an open alert yet
    ('opening'), or an open alert whose condition is gone since `since` ('clearing')."""

    kind: Literal["opening", "clearing"]
    since: dt.datetime


@dataclass(frozen=True)
class Change:
    event_type: str
    alert: Alert


def milliseconds(instant: dt.datetime) -> dt.datetime:
    """The instant in UTC cut to milliseconds: the precision of the alert events' timestamps,
    so the table and the topic show the same times."""
    utc = instant.astimezone(dt.UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def rfc3339(instant: dt.datetime | None) -> str | None:
    if instant is None:
        return None
    return milliseconds(instant).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(event_id: str, change: Change, occurred_at: dt.datetime) -> bytes:
    """An alert event as published on the alerts topic (and posted to the webhook)."""
    alert = {
        k: rfc3339(v) if isinstance(v, dt.datetime) else v for k, v in change.alert.row().items()
    }
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id,
            "event_type": change.event_type,
            "occurred_at": rfc3339(occurred_at),
            "alert": alert,
        }
    )


def transitions(
    open_alerts: Mapping[tuple[str, str], Alert],
    pending: Mapping[tuple[str, str], Pending],
    conditions: Iterable[Condition],
    now: dt.datetime,
    rules: AlertRules,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> tuple[list[Change], dict[tuple[str, str], Pending]]:
    """What the conditions holding `now` do to the alerts: which open (the condition held for
    `open_after_s`), update (severity, value or detail changed materially) and resolve (the
    condition was gone for `resolve_after_s`); returns the changes and the new pending state.

    At most one alert is open per rule and subject; a condition that comes and goes faster than
    the debounce changes nothing. Pure: time and ids come in as arguments."""
    current = {c.key: c for c in conditions}
    changes: list[Change] = []
    still: dict[tuple[str, str], Pending] = {}
    for key in sorted(current):
        condition = current[key]
        rule = rules[condition.rule]
        alert = open_alerts.get(key)
        if alert is None:
            seen = pending.get(key)
            since = seen.since if seen is not None and seen.kind == "opening" else now
            if (now - since).total_seconds() >= rule.open_after_s:
                changes.append(Change(OPENED, _opened(condition, new_id(), now)))
            else:
                still[key] = Pending("opening", since)
        elif _changed(alert, condition, rule):
            changes.append(Change(UPDATED, _updated(alert, condition, now)))
    for key in sorted(open_alerts.keys() - current.keys()):
        alert = open_alerts[key]
        seen = pending.get(key)
        since = seen.since if seen is not None and seen.kind == "clearing" else now
        known = rules.rules.get(alert.rule)
        resolve_after_s = known.resolve_after_s if known is not None else 0.0
        if (now - since).total_seconds() >= resolve_after_s:
            changes.append(
                Change(
                    RESOLVED,
                    dataclasses.replace(
                        alert,
                        state="resolved",
                        resolved_at=now,
                        updated_at=now,
                        revision=alert.revision + 1,
                    ),
                )
            )
        else:
            still[key] = Pending("clearing", since)
    return changes, still


def _opened(condition: Condition, alert_id: str, now: dt.datetime) -> Alert:
    return Alert(
        alert_id=alert_id,
        rule=condition.rule,
        severity=condition.severity,
        subject_type=condition.subject_type,
        subject_id=condition.subject_id,
        message=condition.message,
        state="open",
        opened_at=now,
        updated_at=now,
        revision=1,
        value=condition.value,
        threshold=condition.threshold,
        shipment_id=condition.shipment_id,
        site_id=condition.site_id,
        sku=condition.sku,
        carrier_id=condition.carrier_id,
        origin_site_id=condition.origin_site_id,
        destination_site_id=condition.destination_site_id,
        detail=condition.detail,
    )


def _updated(alert: Alert, condition: Condition, now: dt.datetime) -> Alert:
    return dataclasses.replace(
        alert,
        severity=condition.severity,
        message=condition.message,
        value=condition.value,
        threshold=condition.threshold,
        detail=condition.detail,
        carrier_id=condition.carrier_id,
        origin_site_id=condition.origin_site_id,
        destination_site_id=condition.destination_site_id,
        updated_at=now,
        revision=alert.revision + 1,
    )


def _changed(alert: Alert, condition: Condition, rule: Rule) -> bool:
    """A material change: severity, detail or threshold, or the value by update_min_change."""
    return _differs(
        alert, condition.severity, condition.detail, condition.threshold, condition.value, rule
    )


def _differs(
    alert: Alert,
    level: str,
    detail: str | None,
    threshold: float | None,
    value: float | None,
    rule: Rule,
) -> bool:
    if alert.severity != level or alert.detail != detail or alert.threshold != threshold:
        return True
    if (alert.value is None) != (value is None):
        return True
    if alert.value is None or value is None or rule.update_min_change <= 0:
        return False
    return abs(value - alert.value) >= rule.update_min_change


# --- conditions from the store's rows -----------------------------------------------------------


def condition_params(rules: AlertRules, now: dt.datetime) -> dict[str, Any]:
    """Bound parameters of alert_conditions.sql."""
    dos = rules["low_days_of_supply"]
    return {
        "now": now,
        "late_on": rules["late"].enabled,
        "at_risk_on": rules["at_risk"].enabled,
        "critical_exception_on": rules["critical_exception"].enabled,
        "critical_exception_max_age_minutes": rules["critical_exception"]["max_age_minutes"],
        "stale_tracker_on": rules["stale_tracker"].enabled,
        "stale_tracker_after_minutes": rules["stale_tracker"]["stale_after_minutes"],
        "low_days_of_supply_on": dos.enabled,
        "low_days_of_supply_threshold_days": dos["threshold_days"],
        "low_days_of_supply_since": now - dt.timedelta(days=dos["sales_window_days"]),
        "low_days_of_supply_window_s": dos["sales_window_days"] * 86400.0,
        "low_days_of_supply_min_history_days": dos["min_history_hours"] / 24.0,
    }


# The columns of alert_conditions.sql a Condition is made of; the message's parts are read only
# for the rows that need a new sentence.
CONDITION_COLUMNS: Final = (
    "rule", "subject_type", "subject_id", "value", "threshold", "detail", "shipment_id",
    "site_id", "sku", "carrier_id", "origin_site_id", "destination_site_id",
)  # fmt: skip


def conditions_from_table(
    table: pa.Table,
    rules: AlertRules,
    now: dt.datetime,
    open_alerts: Mapping[tuple[str, str], Alert] | None = None,
) -> list[Condition]:
    """Severity and message for each row of alert_conditions.sql. A condition that leaves its
    open alert unchanged (see `_changed`) keeps that alert's message: `transitions` ignores it
    then, and writing thousands of sentences per evaluation only to drop them cost most of an
    evaluation's Python time on a large network. The rows come as Arrow columns: turning 12,000
    rows of 23 columns into Python tuples and dicts took 130-180 ms of the GIL per evaluation
    at 10M events, the columns needed here 4 ms."""
    known = open_alerts or {}
    columns = {name: table.column(name).to_pylist() for name in CONDITION_COLUMNS}
    names, subjects, details = columns["rule"], columns["subject_id"], columns["detail"]
    values = [None if v is None else float(v) for v in columns["value"]]
    thresholds = [None if t is None else float(t) for t in columns["threshold"]]
    levels: list[str] = []
    texts: list[str] = []
    fresh: list[int] = []  # rows that need a sentence of their own, written below
    for i, name in enumerate(names):
        rule = rules[name]
        level = severity(rule, values[i])
        alert = known.get((name, subjects[i]))
        levels.append(level)
        if alert is not None and not _differs(
            alert, level, details[i], thresholds[i], values[i], rule
        ):
            texts.append(alert.message)
        else:
            texts.append("")
            fresh.append(i)
    if fresh:
        for i, row in zip(fresh, table.take(fresh).to_pylist(), strict=True):
            texts[i] = message(row, now)
    return [
        Condition(
            rule=names[i],
            subject_type=columns["subject_type"][i],
            subject_id=subjects[i],
            severity=levels[i],
            message=texts[i],
            value=values[i],
            threshold=thresholds[i],
            detail=details[i],
            shipment_id=columns["shipment_id"][i],
            site_id=columns["site_id"][i],
            sku=columns["sku"][i],
            carrier_id=columns["carrier_id"][i],
            origin_site_id=columns["origin_site_id"][i],
            destination_site_id=columns["destination_site_id"][i],
        )
        for i in range(len(names))
    ]


def severity(rule: Rule, value: float | None) -> str:
    """The rule's severity, raised to critical past the rule's critical threshold."""
    if value is not None:
        if rule.name == "late" and value >= rule["critical_delay_minutes"]:
            return "critical"
        if rule.name == "low_days_of_supply" and value < rule["critical_below_days"]:
            return "critical"
    return rule.severity


def duration_text(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        hours, rest = divmod(round(minutes), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{minutes / 1440:.1f} days"


def time_text(instant: dt.datetime | None, now: dt.datetime) -> str:
    if instant is None:
        return "unknown"
    utc = instant.astimezone(dt.UTC)
    fmt = "%H:%M UTC" if utc.date() == now.astimezone(dt.UTC).date() else "%d %b %H:%M UTC"
    return utc.strftime(fmt)


def message(row: Mapping[str, Any], now: dt.datetime) -> str:
    """One human sentence for a condition row of alert_conditions.sql."""
    rule = row["rule"]
    value = row["value"]
    subject = row["subject_id"]
    place = row.get("place") or "its destination"
    if rule == "late":
        if row.get("status") == "ARRIVED":
            return f"{subject} arrived at {place} {duration_text(value)} late"
        return (
            f"{subject} to {place} is {duration_text(value)} late "
            f"(ETA {time_text(row.get('at'), now)})"
        )
    if rule == "at_risk":
        return (
            f"{subject} to {place} is expected {duration_text(value)} late "
            f"(ETA {time_text(row.get('at'), now)})"
        )
    if rule == "critical_exception":
        what = row.get("code") or "exception"
        note = f": {row['note']}" if row.get("note") else ""
        delay = f", about {duration_text(value)} delay" if value else ""
        return (
            f"{subject} ({row.get('carrier_name') or 'unknown carrier'}, "
            f"{row.get('origin_place') or '?'} -> {place}) reported a critical {what}{note}"
            f"{delay} at {time_text(row.get('at'), now)}"
        )
    if rule == "stale_tracker":
        return (
            f"{subject} ({row.get('carrier_name') or 'unknown carrier'}) has sent no position "
            f"for {duration_text(value)} (last {time_text(row.get('at'), now)})"
        )
    if rule == "low_days_of_supply":
        stock = (
            f"({row['on_hand']} on hand + {row['in_transit']} in transit, "
            f"selling {row['daily_sales']:.0f} a day)"
        )
        if value <= 0:
            return f"{place} has no {row['sku']} left {stock}"
        return f"{place} has {duration_text(value * 1440)} of supply of {row['sku']} {stock}"
    raise ValueError(f"no message for rule {rule!r}")


# --- the dead-letter rate ------------------------------------------------------------------------


class DeadLetterWindow:
    """Messages and rejects per event topic over the last `window_s` seconds of ingest."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, str, int, int]] = collections.deque()

    def record(
        self,
        at: float,
        first_offsets: Mapping[tuple[str, int], int],
        next_offsets: Mapping[tuple[str, int], int],
        dead_letters: Sequence[DeadLetter],
    ) -> None:
        """One stored batch: messages per topic from its offsets, rejects from its dead letters."""
        messages: dict[str, int] = collections.Counter()
        for (topic, partition), first in first_offsets.items():
            messages[topic] += next_offsets[(topic, partition)] - first
        rejected = collections.Counter(d.topic for d in dead_letters)
        for topic, count in messages.items():
            self._samples.append((at, topic, count, rejected.get(topic, 0)))

    def totals(self, at: float, window_s: float) -> dict[str, tuple[int, int]]:
        """(messages, rejected) per topic within the window ending at `at`."""
        while self._samples and self._samples[0][0] <= at - window_s:
            self._samples.popleft()
        totals: dict[str, tuple[int, int]] = {}
        for _at, topic, count, rejected in self._samples:
            seen, bad = totals.get(topic, (0, 0))
            totals[topic] = (seen + count, bad + rejected)
        return totals


def dead_letter_conditions(
    totals: Mapping[str, tuple[int, int]], rules: AlertRules
) -> list[Condition]:
    rule = rules["dead_letter_rate"]
    if not rule.enabled:
        return []
    found = []
    for topic, (messages, rejected) in sorted(totals.items()):
        if messages < rule["min_messages"] or messages == 0:
            continue
        rate = rejected / messages
        if rate > rule["threshold"]:
            found.append(
                Condition(
                    rule=rule.name,
                    subject_type="pipeline",
                    subject_id=topic,
                    severity=rule.severity,
                    message=(
                        f"{topic}: {rate:.1%} of messages rejected over the last "
                        f"{duration_text(rule['window_s'] / 60)} ({rejected} of {messages})"
                    ),
                    value=rate,
                    threshold=rule["threshold"],
                )
            )
    return found


# --- acknowledgements ---------------------------------------------------------------------------

_Id = Annotated[str, Meta(min_length=1, max_length=64)]


class AckMessage(Struct, forbid_unknown_fields=False, kw_only=True):
    """An acknowledgement on the alert-acks topic (produced by ingest/alert_acks.py)."""

    schema_version: Literal[1]
    event_id: _Id
    event_type: Literal["alert.ack"]
    alert_id: _Id
    acked_by: _Id
    acked_at: Annotated[dt.datetime, Meta(tz=True)]
    note: Annotated[str, Meta(max_length=500)] | None = None


_ACK_DECODER: Final = msgspec.json.Decoder(AckMessage)


def decode_ack(value: bytes | None) -> AckMessage:
    """Check one message of the acks topic; raise Rejected (with a one-line reason) if invalid."""
    if not value:
        raise Rejected("empty message value")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(f"invalid JSON: not valid UTF-8 (byte {e.start})") from None
    try:
        return _ACK_DECODER.decode(value)
    except msgspec.ValidationError as e:
        raise Rejected(str(e)) from None
    except msgspec.DecodeError as e:
        raise Rejected(f"invalid JSON: {e}") from None
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None


def acknowledged(alert: Alert, ack: AckMessage, now: dt.datetime) -> Alert | None:
    """The alert once acknowledged; None when it already was (the first ack wins)."""
    if alert.acked_by is not None:
        return None
    return dataclasses.replace(
        alert,
        acked_by=ack.acked_by,
        acked_at=milliseconds(ack.acked_at),
        ack_note=ack.note,
        updated_at=now,
        revision=alert.revision + 1,
    )


@dataclass
class AckBatch:
    """Acknowledgements consumed together: valid ones with their alerts, rejects, offsets."""

    acks: list[AckMessage] = field(default_factory=list)
    alerts: dict[str, Alert] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


# --- the engine ---------------------------------------------------------------------------------


def webhook_settings(settings: IngestSettings, rules: AlertRules) -> WebhookSettings | None:
    """The webhook to deliver to (checked: ConfigError for a bad URL), or None."""
    if settings.webhook_url is None:
        return None
    return WebhookSettings(
        url=settings.webhook_url,
        timeout_s=settings.webhook_timeout_s,
        retries=rules.webhook.retries,
        backoff_s=rules.webhook.backoff_s,
        queue_size=rules.webhook.queue_size,
    )


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's instant and scope, and the engine's state it starts from: nothing
    changes the alerts while it runs (`AlertEngine.accepts_acks`)."""

    now: dt.datetime
    now_mono: float
    slow: bool  # the slow rules (SLOW_RULES) are evaluated too
    params: dict[str, Any]
    open_alerts: dict[tuple[str, str], Alert]
    pending: dict[tuple[str, str], Pending]
    slow_conditions: list[Condition]  # the slow rules' last conditions, when not `slow`
    dead_letter_totals: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Outcome:
    """What one evaluation found: the changes to store and publish, the new pending state."""

    changes: list[Change]
    pending: dict[tuple[str, str], Pending]
    slow_conditions: list[Condition]


class AlertEngine:
    """Runs in the worker's loop and thread: evaluates, stores, publishes, offers to the webhook.

    An evaluation (the rules' SQL, the conditions built from its rows and the transitions they
    make: 100-500 ms on a large store) runs on a thread of its own, over a cursor of the store,
    so the worker's loop keeps storing batches meanwhile: an evaluation in the loop held every
    event behind it. Its changes are stored and published on the worker's thread, the only one
    that changes alerts, at most CHANGES_PER_TURN per turn of the loop. Acknowledgements wait
    while an evaluation runs or its changes do (`accepts_acks`): the transitions were computed
    from the alerts as they were when it started."""

    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        rules: AlertRules,
        webhook: WebhookSettings | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.topic = kafka.alerts_topic
        self._kafka = kafka
        self._producer = EventProducer(kafka)
        self.webhook = None if webhook is None else Webhook(webhook)
        self.open: dict[tuple[str, str], Alert] = {
            a.key: a for a in map(Alert.from_row, store.open_alerts())
        }
        self.pending: dict[tuple[str, str], Pending] = {}
        self.dead_letter_window = DeadLetterWindow()
        self.live = rules.engine.evaluate_while_catching_up
        self._last_evaluation = -math.inf
        self._last_slow_evaluation = -math.inf
        self._slow_conditions: list[Condition] = []
        self._in_flight: dict[str, tuple[str, bytes]] = {}  # event_id -> (alert_id, payload)
        self._confirmed: list[str] = []
        self._to_retry: dict[str, tuple[str, bytes]] = {}
        self._retry_at = 0.0
        self._last_bookkeeping = -math.inf
        self._webhook_counters: dict[str, Any] | None = None
        self._reader = store.cursor()  # made here: only the worker's thread touches store.con
        self._evaluator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-rules")
        self._running: tuple[Evaluation, Future[Outcome]] | None = None
        self._waiting: collections.deque[Change] = collections.deque()  # found, not stored yet
        self._waiting_at = dt.datetime.min.replace(tzinfo=dt.UTC)  # their evaluation's instant
        self._last_cost_s = 0.0  # wall time of the last evaluation, applied
        left = store.unpublished_alert_events()
        if left:
            log.info("publishing %d alert event(s) left unpublished by the last run", len(left))
        for event_id, alert_id, payload in left:
            self._publish(event_id, alert_id, payload.encode())
        if self.open:
            log.info("%d alert(s) open from the last run", len(self.open))

    # -- called by the worker --

    def record_batch(
        self,
        first_offsets: Mapping[tuple[str, int], int],
        next_offsets: Mapping[tuple[str, int], int],
        dead_letters: Sequence[DeadLetter],
    ) -> None:
        self.dead_letter_window.record(time.monotonic(), first_offsets, next_offsets, dead_letters)

    @property
    def accepts_acks(self) -> bool:
        """Whether acknowledgements can be applied now: not while an evaluation runs or its
        changes wait to be stored, since those were computed from the alerts without them."""
        return self._running is None and not self._waiting

    def tick(self, *, stored_batch: bool, caught_up: bool) -> None:
        """Take the outcome of an evaluation that finished, store and publish a slice of its
        changes, start the next evaluation when due, then move the publication and the
        webhook's counters along. Never waits for the rules' SQL."""
        if caught_up and not self.live:
            log.info("read every partition to its end: alert rules are now evaluated")
            self.live = True
        if self._running is not None and self._running[1].done():
            evaluation, future = self._running
            self._running = None
            self._accept(evaluation, future.result())
            self._last_cost_s = time.monotonic() - evaluation.now_mono
        if self._waiting:
            self._store_waiting(CHANGES_PER_TURN)
        now_mono = time.monotonic()
        since = now_mono - self._last_evaluation
        engine = self.rules.engine
        after_batch_s = max(engine.min_interval_s, self._last_cost_s / EVALUATION_DUTY)
        if (
            self.live
            and self.accepts_acks
            and (since >= engine.eval_interval_s or (stored_batch and since >= after_batch_s))
        ):
            self._last_evaluation = now_mono
            evaluation = self._plan(dt.datetime.now(dt.UTC))
            self._running = (evaluation, self._evaluator.submit(self._outcome, evaluation))
        self._producer.poll()
        if now_mono - self._last_bookkeeping >= BOOKKEEPING_INTERVAL_S:
            # Small writes (published marks, webhook counters), batched: each is a commit.
            self._last_bookkeeping = now_mono
            self._settle_publication(now_mono)
            self._record_webhook()

    def finish(self, *, at_end: bool) -> None:
        """At a normal stop: store what an evaluation still running finds; at the end of the
        log (--stop-at-end) evaluate once more, so the rules have seen the final state."""
        if self._running is not None:
            evaluation, future = self._running
            self._running = None
            self._accept(evaluation, future.result())
        self._store_waiting()
        if at_end and self.live:
            self.evaluate(dt.datetime.now(dt.UTC))

    def evaluate(self, now: dt.datetime) -> list[Change]:
        """One evaluation of every rule, here and now; stores and publishes what changed."""
        self._store_waiting()
        evaluation = self._plan(now)
        outcome = self._outcome(evaluation)
        self._accept(evaluation, outcome)
        self._store_waiting()
        return outcome.changes

    def _plan(self, now: dt.datetime) -> Evaluation:
        """An evaluation at `now`, with copies of the state it starts from."""
        now = milliseconds(now)
        now_mono = time.monotonic()
        params = condition_params(self.rules, now)
        slow = now_mono - self._last_slow_evaluation >= self.rules.engine.slow_interval_s
        if not slow:
            params |= {f"{name}_on": False for name in SLOW_RULES}
        window = self.rules["dead_letter_rate"]["window_s"]
        return Evaluation(
            now,
            now_mono,
            slow,
            params,
            dict(self.open),
            dict(self.pending),
            list(self._slow_conditions),
            self.dead_letter_window.totals(now_mono, window),
        )

    def _outcome(self, evaluation: Evaluation) -> Outcome:
        """The conditions holding and the transitions they make (on the evaluator's thread, or
        the caller's): reads the store over the engine's cursor and nothing of the engine's
        own state but what `evaluation` holds."""
        table = self.store.alert_conditions(evaluation.params, self._reader)
        found = conditions_from_table(table, self.rules, evaluation.now, evaluation.open_alerts)
        if evaluation.slow:
            slow_conditions = [c for c in found if c.rule in SLOW_RULES]
        else:
            slow_conditions = evaluation.slow_conditions
            found += slow_conditions
        found += dead_letter_conditions(evaluation.dead_letter_totals, self.rules)
        changes, pending = transitions(
            evaluation.open_alerts, evaluation.pending, found, evaluation.now, self.rules
        )
        return Outcome(changes, pending, slow_conditions)

    def _accept(self, evaluation: Evaluation, outcome: Outcome) -> None:
        """Take an evaluation's outcome: its changes wait to be stored (`_store_waiting`)."""
        if evaluation.slow:
            self._last_slow_evaluation = evaluation.now_mono
        self._slow_conditions = outcome.slow_conditions
        self.pending = outcome.pending
        self._waiting.extend(outcome.changes)
        self._waiting_at = evaluation.now

    def _store_waiting(self, limit: int | None = None) -> None:
        """Store and publish up to `limit` (all by default) of the changes found, in order."""
        take = len(self._waiting) if limit is None else min(limit, len(self._waiting))
        if take:
            self._commit([self._waiting.popleft() for _ in range(take)], self._waiting_at)

    def read_acks(self, messages: Sequence[Message]) -> AckBatch:
        """Check acknowledgements: invalid ones and acks of unknown alerts become dead letters
        (for the worker to send to the acks topic's DLQ before `apply_acks` stores them)."""
        batch = AckBatch()
        valid: list[tuple[AckMessage, Message]] = []
        for msg in messages:
            topic, partition, offset = position(msg)
            batch.next_offsets[(topic, partition)] = max(
                batch.next_offsets.get((topic, partition), 0), offset + 1
            )
            try:
                valid.append((decode_ack(msg.value()), msg))
            except Rejected as e:
                batch.dead_letters.append(
                    DeadLetter(topic, partition, offset, e.reason, msg.key(), msg.value())
                )
        wanted = sorted({ack.alert_id for ack, _msg in valid})
        batch.alerts = {a.alert_id: a for a in map(Alert.from_row, self.store.alerts_by_id(wanted))}
        for ack, msg in valid:
            if ack.alert_id in batch.alerts:
                batch.acks.append(ack)
            else:
                topic, partition, offset = position(msg)
                batch.dead_letters.append(
                    DeadLetter(topic, partition, offset, "unknown alert_id", msg.key(), msg.value())
                )
        return batch

    def apply_acks(self, batch: AckBatch) -> None:
        """Store the acknowledgements with the acks topic's offsets (one transaction), then
        publish `alert.acknowledged` for each alert acknowledged for the first time."""
        now = milliseconds(dt.datetime.now(dt.UTC))
        alerts = dict(batch.alerts)
        changes = []
        for ack in batch.acks:
            alert = acknowledged(alerts[ack.alert_id], ack, now)
            if alert is None:
                log.info(
                    "alert %s was already acknowledged by %s: ignoring the ack by %s",
                    ack.alert_id,
                    alerts[ack.alert_id].acked_by,
                    ack.acked_by,
                )
                continue
            alerts[ack.alert_id] = alert
            changes.append(Change(ACKNOWLEDGED, alert))
        self._commit(changes, now, batch.dead_letters, batch.next_offsets)

    def reset_producer(self) -> None:
        """The broker lost its data: an idempotent producer cannot go on; what was in flight
        is sent again by a new one."""
        self._to_retry.update(self._in_flight)
        self._in_flight.clear()
        self._producer = EventProducer(self._kafka)

    def close(self) -> None:
        """Flush what is being published (the rest waits in the outbox for the next run)."""
        if self._running is not None:  # its outcome is dropped: the next run evaluates again
            self._running[1].exception()
            self._running = None
        self._waiting.clear()  # likewise: found from the open alerts the next run reloads
        self._evaluator.shutdown()
        self._reader.close()
        try:
            self._producer.flush(10.0)
        except BrokerError as e:  # what failed is counted per event just below
            log.debug("flushing alert events: %s", e)
        self._settle_publication(time.monotonic(), retry=False)
        left = len(self._in_flight) + len(self._to_retry)
        if left:
            log.warning("%d alert event(s) not published yet: sent at the next start", left)
        if self.webhook is not None:
            self.webhook.close()
        self._record_webhook()

    # -- internals --

    def _commit(
        self,
        changes: Sequence[Change],
        now: dt.datetime,
        dead_letters: Sequence[DeadLetter] = (),
        next_offsets: dict[tuple[str, int], int] | None = None,
    ) -> None:
        if not changes and not dead_letters and not next_offsets:
            return
        events = []
        for change in changes:
            event_id = str(uuid.uuid4())
            payload = event_payload(event_id, change, now)
            events.append((event_id, change, payload))
        self.store.store_alert_events(
            [change.alert.row() for change in changes],
            [
                (event_id, c.event_type, c.alert.alert_id, now, payload.decode())
                for event_id, c, payload in events
            ],
            now,
            dead_letters,
            next_offsets,
        )
        for event_id, change, payload in events:
            alert = change.alert
            if change.event_type == RESOLVED:
                self.open.pop(alert.key, None)
            elif alert.state == "open" and (
                change.event_type != ACKNOWLEDGED
                or self.open.get(alert.key, alert).alert_id == alert.alert_id
            ):
                self.open[alert.key] = alert
            log.debug(
                "%s %s [%s]: %s", change.event_type, alert.rule, alert.severity, alert.message
            )
            self._publish(event_id, alert.alert_id, payload)
            if self.webhook is not None:
                self.webhook.offer(payload)
        if changes:
            kinds = collections.Counter(change.event_type for change in changes)
            log.info(
                "alerts: %s (%d open)",
                ", ".join(
                    f"{n} {kind.removeprefix('alert.')}" for kind, n in sorted(kinds.items())
                ),
                len(self.open),
            )

    def _publish(self, event_id: str, alert_id: str, payload: bytes) -> None:
        self._in_flight[event_id] = (alert_id, payload)

        def delivered(error: KafkaError | None, _msg: Message) -> None:
            sent = self._in_flight.pop(event_id, None)
            if error is None:
                self._confirmed.append(event_id)
            elif sent is not None:
                log.warning("alert event %s not published (%s): retrying", event_id, error.str())
                self._to_retry[event_id] = sent

        self._producer.send(self.topic, alert_id, payload, on_delivery=delivered)

    def _settle_publication(self, now_mono: float, retry: bool = True) -> None:
        """Mark what the broker confirmed as published; send failed events again (every 5 s)."""
        if self._confirmed:
            confirmed, self._confirmed = self._confirmed, []
            self.store.mark_alert_events_published(confirmed, dt.datetime.now(dt.UTC))
        if retry and self._to_retry and now_mono >= self._retry_at:
            failed, self._to_retry = self._to_retry, {}
            self._retry_at = now_mono + RETRY_PUBLISH_S
            for event_id, (alert_id, payload) in failed.items():
                self._publish(event_id, alert_id, payload)

    def _record_webhook(self) -> None:
        if self.webhook is None:
            return
        counters = self.webhook.counters()
        if counters != self._webhook_counters:
            self._webhook_counters = counters
            self.store.record_alert_delivery(self.webhook.url, counters)
