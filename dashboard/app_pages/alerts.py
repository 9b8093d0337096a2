"""Alerts: what the worker's rules flagged, open and recently resolved, and acknowledgement by a
signed-in planner or admin (sent to Kafka; shown here once the worker has stored it)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import alert_queries, auth, components, queries, theme
from dashboard.alert_queries import (
    RULE_BY_KEY,
    RULES,
    SEVERITIES,
    STATE_LABELS,
    STATES,
    AlertChoice,
)
from dashboard.filters import Filters
from dashboard.formatting import duration, escape_markdown, missing, number, text
from ingest.alert_acks import MAX_NOTE, kafka_settings_from_env, publish_acks
from ingest.errors import TiretrackError

SENT_KEY = "alert_acks_sent"  # alert id -> when this session sent its acknowledgement (UTC)
STORE_WAIT = dt.timedelta(seconds=30)  # an acknowledgement not stored by then is called out
SENT_TEXT = "it appears when the worker has stored it"


def rule_label(key: object) -> str:
    rule = RULE_BY_KEY.get(key) if isinstance(key, str) else None
    return rule.label if rule else text(key)


def value_text(rule: object, value: object, threshold: object) -> str:
    """'95 min (threshold 60 min)': the measured value against the rule's threshold."""
    spec = RULE_BY_KEY.get(rule) if isinstance(rule, str) else None
    unit = f" {spec.unit}" if spec and spec.unit else ""
    factor = spec.factor if spec else 1.0

    def amount(x: object) -> str:
        return f"{float(str(x)) * factor:,.4g}{unit}"

    if missing(value):
        return "" if missing(threshold) else f"threshold {amount(threshold)}"
    return amount(value) + ("" if missing(threshold) else f" (threshold {amount(threshold)})")


def alert_label(row: pd.Series) -> str:
    """How the acknowledge box lists an alert (plain text: options are never markdown)."""
    message = text(row["message"], "")
    short = message if len(message) <= 70 else message[:69] + "…"
    return f"{str(row['severity']).upper()} · {rule_label(row['rule'])} · {short}"


SUBJECT_LABELS = {"shipment": "Shipment", "site_sku": "Stock", "lane": "Lane", "pipeline": "Topic"}


def alerts_view(frame: pd.DataFrame, *, resolved: bool) -> pd.DataFrame:
    """The table's columns, what a planner scans first on the left."""
    subject = frame["subject_type"].map(lambda t: SUBJECT_LABELS.get(t, text(t, "")))
    columns: dict[str, object] = {
        "Severity": frame["severity"],
        "Rule": frame["rule"].map(rule_label),
        "Subject": subject + " " + frame["subject_id"].fillna(""),
        "Message": frame["message"],
    }
    if resolved:
        columns["Resolved"] = frame["resolved_at"]
    columns |= {
        "Lasted" if resolved else "Age": frame["age_minutes"].map(duration),
        "Acked by": frame["acked_by"],
        "Value": [
            value_text(r, v, t)
            for r, v, t in zip(frame["rule"], frame["value"], frame["threshold"], strict=True)
        ],
        "Opened": frame["opened_at"],
        "Acked at": frame["acked_at"],
        "Note": frame["ack_note"],
    }
    return pd.DataFrame(columns)


def alerts_table(frame: pd.DataFrame, *, resolved: bool, key: str) -> None:
    # st.dataframe shows every cell as text: a message can never inject HTML or markdown.
    view = alerts_view(frame, resolved=resolved)
    instant = st.column_config.DatetimeColumn
    st.dataframe(
        view.style.map(theme.cell_css, subset=["Severity"]),
        hide_index=True,
        height=min(420, 38 + 35 * max(len(view), 1)),
        key=key,
        column_config={
            "Message": st.column_config.TextColumn("Message", width="medium"),
            "Opened": instant("Opened (UTC)", format="DD MMM HH:mm:ss"),
            "Resolved": instant("Resolved (UTC)", format="DD MMM HH:mm:ss"),
            "Value": st.column_config.TextColumn("Value vs threshold"),
            "Acked at": instant("Acked at (UTC)", format="DD MMM HH:mm:ss"),
        },
    )
    total = int(frame["total"].iloc[0]) if len(frame) else 0
    if total > len(frame):
        st.caption(f"The first {number(len(frame))} of {number(total)} shown.")


def page_choice() -> AlertChoice:
    """The page's own filters, kept in the URL (as the labels shown: `?alert_severity=critical`)."""
    rule, severity, state = st.columns(3)
    return AlertChoice.of(
        rule.multiselect(
            "Rule",
            [r.key for r in RULES],
            format_func=rule_label,
            key="alert_rule",
            placeholder="All",
            bind="query-params",
        ),
        severity.multiselect(
            "Severity",
            list(SEVERITIES),
            key="alert_severity",
            placeholder="All",
            bind="query-params",
        ),
        state.multiselect(
            "State",
            list(STATES),
            format_func=STATE_LABELS.__getitem__,
            key="alert_state",
            placeholder="All",
            bind="query-params",
        ),
    )


def headline(counts: list[alert_queries.SeverityCount]) -> None:
    columns = st.columns(5)
    columns[0].metric("Open alerts", number(sum(c.alerts for c in counts)))
    for column, count in zip(columns[1:4], counts, strict=True):
        marker = f":{theme.SEVERITY_COLOR_NAME[count.severity]}[●] {count.severity.capitalize()}"
        column.metric(marker, number(count.alerts))
    columns[4].metric("Not acknowledged", number(sum(c.unacknowledged for c in counts)))


def acknowledge(alert_ids: list[str], note: str) -> None:
    """Publish the acknowledgements as the user of this session, if that user may: the role is
    looked up now, on the server, whatever the browser showed or sent."""
    user = auth.acknowledger(auth.current_identity(auth.settings()))
    if user is None:
        st.error("Only a signed-in planner or admin can acknowledge alerts.", icon="🔒")
        return
    if not alert_ids:
        st.warning("Choose the alerts to acknowledge first.")
        return
    try:
        publish_acks(kafka_settings_from_env(), alert_ids, user, note)
    except (TiretrackError, ValueError) as e:
        st.error(escape_markdown(str(e)), icon="⚠️")
        return
    sent = st.session_state.setdefault(SENT_KEY, {})
    now = dt.datetime.now(dt.UTC)
    sent |= dict.fromkeys(alert_ids, now)
    st.success(
        f"Acknowledgement sent for {number(len(alert_ids))} alert"
        f"{'s' if len(alert_ids) > 1 else ''}; {SENT_TEXT}.",
        icon="✉️",
    )


def ack_form(open_alerts: pd.DataFrame, signer: str | None, why_not: str) -> None:
    waiting = open_alerts[open_alerts["acked_at"].isna()]
    if waiting.empty:
        return
    labels = {str(row["alert_id"]): alert_label(row) for _, row in waiting.iterrows()}
    locked = signer is None
    with st.form("alert_ack", clear_on_submit=True, border=True):
        st.markdown("**Acknowledge**" + (f" as {escape_markdown(signer)}" if signer else ""))
        chosen = st.multiselect(
            "Alerts to acknowledge",
            list(labels),
            format_func=lambda alert_id: labels.get(alert_id, alert_id),
            key="ack_alerts",
            placeholder="Choose open alerts",
            disabled=locked,
        )
        note = st.text_input("Note (optional)", max_chars=MAX_NOTE, key="ack_note", disabled=locked)
        submitted = st.form_submit_button(
            "Acknowledge", type="primary", key="ack_submit", disabled=locked
        )
        if locked:
            st.caption(why_not)
    if submitted:
        acknowledge([str(a) for a in chosen], note)


def pending_acks(open_alerts: pd.DataFrame) -> None:
    """This session's acknowledgements the worker has not stored yet."""
    sent: dict[str, dt.datetime] = st.session_state.get(SENT_KEY, {})
    if not sent:
        return
    waiting = set(open_alerts.loc[open_alerts["acked_at"].isna(), "alert_id"].astype(str))
    pending = {alert_id: at for alert_id, at in sent.items() if alert_id in waiting}
    st.session_state[SENT_KEY] = pending
    if not pending:
        return
    oldest = dt.datetime.now(dt.UTC) - min(pending.values())
    if oldest > STORE_WAIT:
        st.warning(
            f"{number(len(pending))} acknowledgement(s) sent "
            f"{duration(oldest.total_seconds() / 60)} ago are not stored yet: is the worker "
            "running and reading the acknowledgements topic?",
            icon="⏳",
        )
    else:
        st.info(f"{number(len(pending))} acknowledgement(s) sent; {SENT_TEXT}.", icon="✉️")


def signer_and_reason() -> tuple[str | None, str]:
    """Who acknowledges in this session, or why nobody can."""
    identity = auth.current_identity(auth.settings())
    signer = auth.acknowledger(identity)
    if identity is None:
        why = (
            "Acknowledging needs a signed-in planner or admin; this dashboard runs as an open "
            "demo (add users with `tiretrack user add`)."
        )
    else:
        why = f"Your role ({identity.role}) can see alerts; planners and admins acknowledge them."
    return signer, why


@st.fragment(run_every=queries.REFRESH_SECONDS)
def live_alerts(filters: Filters, choice: AlertChoice) -> None:
    signer, why_not = signer_and_reason()  # each run: a role taken away applies at once
    try:
        if not alert_queries.alerts_available():
            components.empty_state(
                "Alerts are not available: this database was written by a worker from before "
                "alerts. Restart `tiretrack ingest` with the current version to create them."
            )
            return
        counts = alert_queries.open_counts(filters)
        open_alerts = alert_queries.open_alerts(filters, choice)
        resolved = alert_queries.resolved_alerts(filters, choice)
    except queries.DataUnavailable as e:
        components.unavailable(e)
        return
    headline(counts)
    if choice.shows("unacknowledged") or choice.shows("acknowledged"):
        st.subheader("Open alerts")
        st.caption("Critical first, then the oldest first. Refreshes by itself.")
        if open_alerts.empty:
            components.empty_state("No open alert for these filters.")
        else:
            alerts_table(open_alerts, resolved=False, key="open_alerts")
            ack_form(open_alerts, signer, why_not)
        pending_acks(open_alerts)
    if choice.shows("resolved"):
        st.subheader(f"Resolved in the last {alert_queries.RECENT_HOURS} h")
        if resolved.empty:
            components.empty_state(
                f"No alert was resolved in the last {alert_queries.RECENT_HOURS} h "
                "for these filters."
            )
        else:
            alerts_table(resolved, resolved=True, key="resolved_alerts")


st.title("Alerts")
filters = components.current_filters()
choice = page_choice()
st.caption(
    "Raised by the worker's rules as events arrive. An acknowledgement records who saw an alert "
    "and when; it travels through Kafka, so every dashboard shows it once the worker has stored "
    "it. Sidebar filters narrow the alerts that name a carrier, site or SKU of their kind; "
    "alerts without one stay. Mode and status do not apply."
)
live_alerts(filters, choice)
