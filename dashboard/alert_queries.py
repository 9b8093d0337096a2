"""The alerts page's and panel's read side: open and recently resolved alerts, counts by severity.

The worker keeps one row per alert in `alerts` (migration `ingest/sql/003_alerts.sql`); the
dashboard only reads it, like every read here one SQL run on the worker and cached for a few
seconds (`dashboard.queries.run`). A database written by an older worker has no `alerts` table:
`alerts_available` says so instead of failing. User choices reach SQL only through whitelists
(`clean`) and the literal helpers behind `queries.in_list`.

How the sidebar's shared filters apply: a filter narrows the alerts that name something of its
kind and leaves the others (a pipeline alert names no carrier, site or SKU; a stock alert names
no carrier). Carrier: the alert's carrier. Region: any site the alert names (its site, origin or
destination). Plant and distributor: the origin and the destination of shipment and lane alerts,
and a stock alert's site when it is of that kind. Segment and SKU: a stock alert's SKU, and a
shipment alert whose shipment's plan has a line of a chosen SKU. Mode and status do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboard.filters import Filters, clean
from dashboard.queries import chosen_skus_sql, in_list, run
from dashboard.theme import SEVERITY_ORDER
from ingest.database import string_literal


@dataclass(frozen=True)
class AlertRule:
    key: str
    label: str
    unit: str  # of value and threshold as shown
    meaning: str
    factor: float = 1.0  # shown = stored x factor (a share shown as a percentage)


RULES = (
    AlertRule("critical_exception", "Critical exception", "min", "a critical exception"),
    AlertRule("late", "Late", "min", "delay beyond the on-time tolerance"),
    AlertRule("at_risk", "At risk", "min", "the ETA lies beyond planned arrival + tolerance"),
    AlertRule("stale_tracker", "Stale tracker", "min", "no position for too long in transit"),
    AlertRule("low_days_of_supply", "Low days of supply", "d", "a distributor's cover is short"),
    AlertRule("dead_letter_rate", "Dead-letter rate", "%", "too many rejected messages", 100.0),
)
RULE_BY_KEY = {r.key: r for r in RULES}
SEVERITIES = SEVERITY_ORDER  # critical, warning, info
# Page filter on the alert's state; an alert is in exactly one of these.
STATES = ("unacknowledged", "acknowledged", "resolved")
STATE_LABELS = {
    "unacknowledged": "Open, not acknowledged",
    "acknowledged": "Open, acknowledged",
    "resolved": "Resolved",
}
STATE_SQL = {
    "unacknowledged": "(a.state = 'open' AND a.acked_at IS NULL)",
    "acknowledged": "(a.state = 'open' AND a.acked_at IS NOT NULL)",
    "resolved": "(a.state = 'resolved')",
}
RECENT_HOURS = 24  # resolved alerts shown
MAX_ROWS = 500
SEVERITY_RANK_SQL = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"

ALERTS_TABLE_SQL = """SELECT count(*) AS tables FROM duckdb_tables()
WHERE schema_name = 'main' AND table_name = 'alerts'"""

ALERT_COLUMNS = """a.alert_id, a.severity, a.rule, a.subject_type, a.subject_id, a.message,
    a.state, a.opened_at, a.updated_at, a.resolved_at,
    minutes_between(coalesce(a.resolved_at, now()), a.opened_at) AS age_minutes,
    a.value, a.threshold, a.acked_by, a.acked_at, a.ack_note, a.revision,
    a.shipment_id, a.site_id, a.sku, a.carrier_id, a.origin_site_id, a.destination_site_id,
    count(*) OVER () AS total"""


@dataclass(frozen=True)
class AlertChoice:
    """The alerts page's own filters; an empty tuple means "all"."""

    rule: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    state: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: list[str], severity: list[str], state: list[str]) -> AlertChoice:
        """From widget or URL values, unknown ones dropped."""
        return cls(
            clean(rule, [r.key for r in RULES]), clean(severity, SEVERITIES), clean(state, STATES)
        )

    def shows(self, state: str) -> bool:
        return not self.state or state in self.state


# --- SQL ---


def _sites(condition: str) -> str:
    return f"(SELECT site_id FROM ref_sites WHERE {condition})"


def shared_filters_sql(filters: Filters) -> str:
    """SQL true for the alerts (aliased `a`) the sidebar's filters keep (module docstring)."""
    where = []
    if filters.carrier:
        where.append(f"(a.carrier_id IS NULL OR a.carrier_id IN {in_list(filters.carrier)})")
    if filters.region:
        regional = _sites(f"region IN {in_list(filters.region)}")
        where.append(
            "(coalesce(a.site_id, a.origin_site_id, a.destination_site_id) IS NULL"
            f" OR a.site_id IN {regional} OR a.origin_site_id IN {regional}"
            f" OR a.destination_site_id IN {regional})"
        )
    for name, end, kind in (
        ("plant", "origin_site_id", "plant"),
        ("distributor", "destination_site_id", "distributor"),
    ):
        chosen = getattr(filters, name)
        if chosen:
            where.append(f"(a.{end} IS NULL OR a.{end} IN {in_list(chosen)})")
            where.append(
                f"(a.site_id IS NULL OR a.site_id NOT IN {_sites(f'kind = {string_literal(kind)}')}"
                f" OR a.site_id IN {in_list(chosen)})"
            )
    skus = chosen_skus_sql(filters)
    if skus is not None:
        planned = (
            "(SELECT shipment_id FROM shipments_now WHERE list_has_any("
            f"list_transform(planned_lines, lambda l: l.sku), (SELECT list(sku) FROM ({skus}))))"
        )
        where.append(
            f"(a.sku IN ({skus}) OR (a.sku IS NULL AND a.shipment_id IS NULL)"
            f" OR (a.sku IS NULL AND a.shipment_id IN {planned}))"
        )
    return " AND ".join(where) or "TRUE"


def choice_sql(choice: AlertChoice) -> str:
    """SQL true for the alerts the page's own filters keep."""
    where = []
    if choice.rule:
        where.append(f"a.rule IN {in_list(choice.rule)}")
    if choice.severity:
        where.append(f"a.severity IN {in_list(choice.severity)}")
    if choice.state:
        where.append("(" + " OR ".join(STATE_SQL[s] for s in choice.state) + ")")
    return " AND ".join(where) or "TRUE"


def open_alerts_sql(filters: Filters, choice: AlertChoice, limit: int = MAX_ROWS) -> str:
    """Open alerts, critical first, then the oldest first."""
    return f"""SELECT {ALERT_COLUMNS}
FROM alerts AS a
WHERE a.state = 'open' AND {shared_filters_sql(filters)} AND {choice_sql(choice)}
ORDER BY {SEVERITY_RANK_SQL}, a.opened_at, a.alert_id
LIMIT {int(limit)}"""


def resolved_alerts_sql(
    filters: Filters, choice: AlertChoice, hours: int = RECENT_HOURS, limit: int = MAX_ROWS
) -> str:
    """Alerts resolved in the last `hours` (worker clock), the latest first."""
    return f"""SELECT {ALERT_COLUMNS}
FROM alerts AS a
WHERE a.state = 'resolved' AND a.resolved_at >= now() - INTERVAL {int(hours)} HOUR
    AND {shared_filters_sql(filters)} AND {choice_sql(choice)}
ORDER BY a.resolved_at DESC, a.alert_id
LIMIT {int(limit)}"""


def open_counts_sql(filters: Filters) -> str:
    """Open alerts per severity (the panel's numbers), under the sidebar's filters only."""
    return f"""SELECT a.severity, count(*) AS alerts,
    count(*) FILTER (WHERE a.acked_at IS NULL) AS unacknowledged
FROM alerts AS a
WHERE a.state = 'open' AND {shared_filters_sql(filters)}
GROUP BY a.severity"""


# --- data ---


def alerts_available() -> bool:
    """False for a database from before alerts (no `alerts` table yet)."""
    return bool(run(ALERTS_TABLE_SQL).iloc[0]["tables"])


@dataclass(frozen=True)
class SeverityCount:
    severity: str
    alerts: int
    unacknowledged: int


def open_counts(filters: Filters) -> list[SeverityCount]:
    """Open alerts per severity, every severity listed (zero included), critical first."""
    frame = run(open_counts_sql(filters)).set_index("severity")
    return [
        SeverityCount(
            severity,
            int(frame.loc[severity, "alerts"]) if severity in frame.index else 0,
            int(frame.loc[severity, "unacknowledged"]) if severity in frame.index else 0,
        )
        for severity in SEVERITIES
    ]


def open_alerts(filters: Filters, choice: AlertChoice) -> pd.DataFrame:
    return run(open_alerts_sql(filters, choice))


def resolved_alerts(filters: Filters, choice: AlertChoice) -> pd.DataFrame:
    return run(resolved_alerts_sql(filters, choice))
