"""Pure builders of time along shipments: one shipment's event timeline, transit time per lane."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import theme
from dashboard.formatting import clock, duration, missing, number, percent, text

TIME_AXIS = "Event time (UTC)"
EVENT_AXIS = "Event"
ETA_AXIS = "ETA vs plan (minutes)"
TRANSIT_AXIS = "Transit time (hours)"
ON_TIME_AXIS = "Arrived on time (%)"


@dataclass(frozen=True)
class EventKind:
    label: str
    symbol: str
    hex: str
    size: int = 12


# Top to bottom on the timeline: the order a shipment lives through.
EVENT_KINDS: dict[str, EventKind] = {
    "shipment.created": EventKind("Planned", "square", theme.PRIMARY_HEX),
    "shipment.departed": EventKind("Departed", "triangle-right", theme.PRIMARY_HEX, 14),
    "shipment.position": EventKind("Position", "circle", "#8fa6c8", 6),
    "shipment.eta_updated": EventKind("ETA update", "diamond", theme.INFO_HEX),
    "shipment.exception": EventKind("Exception", "x", theme.EXCEPTION.hex, 13),
    "shipment.arrived": EventKind("Arrived", "triangle-down", theme.ON_TIME.hex, 14),
    "shipment.delivered": EventKind("Delivered", "star", theme.ON_TIME.hex, 16),
    "shipment.cancelled": EventKind("Cancelled", "x-thin-open", theme.NO_PLAN.hex, 14),
}
ARRIVALS = ("shipment.arrived", "shipment.delivered")  # the earliest of either is the arrival
LINES_SHOWN = 4  # SKU lines spelled out in a detail text; the rest are counted
# On-time probability bands of the lane chart, in the shared status colours.
CONFIDENT_SHARE, SHAKY_SHARE = 0.9, 0.7


def event_label(event_type: Any) -> str:
    kind = EVENT_KINDS.get(event_type) if isinstance(event_type, str) else None
    return kind.label if kind else text(event_type)


def _utc(value: Any) -> pd.Timestamp | None:
    """An instant as a naive UTC timestamp (plotly.js has no time zones; every axis says UTC)."""
    if missing(value):
        return None
    instant = pd.Timestamp(value)
    return instant.tz_convert("UTC").tz_localize(None) if instant.tzinfo else instant


def _signed_minutes(minutes: float) -> str:
    return f"{'+' if minutes >= 0 else '−'}{duration(minutes)}"


def lines_text(lines: Any) -> str:
    """SKU lines as '991 tires: P-185 × 49, P-175 × 942' (the first few lines spelled out)."""
    # A list of {sku, quantity} (an array of them out of Arrow); null and NA are not iterable.
    items = [line for line in lines if line is not None] if isinstance(lines, Iterable) else []
    if not items:
        return "no lines"
    total = sum(int(line["quantity"]) for line in items)
    shown = ", ".join(f"{line['sku']} × {number(line['quantity'])}" for line in items[:LINES_SHOWN])
    more = f", +{len(items) - LINES_SHOWN} more SKUs" if len(items) > LINES_SHOWN else ""
    return f"{number(total)} tires: {shown}{more}"


def event_details(event: Mapping[str, Any], planned_arrival: Any = None) -> str:
    """What one event says, in a planner's words; `planned_arrival` is the plan in force then
    (an ETA is shown against it)."""
    kind = event.get("event_type")
    where = ""
    if not missing(event.get("lat")) and not missing(event.get("lon")):
        where = f"{float(event['lat']):.4f}, {float(event['lon']):.4f}"
    if kind == "shipment.created":
        return (
            f"{text(event.get('origin_site_id'))} → {text(event.get('destination_site_id'))} "
            f"with {text(event.get('carrier_id'))} by {text(event.get('mode'))}; "
            f"depart {clock(event.get('planned_departure'))}, "
            f"arrive {clock(event.get('planned_arrival'))}; {lines_text(event.get('lines'))}"
        )
    if kind == "shipment.position":
        parts = [where]
        if not missing(event.get("speed_kmh")):
            parts.append(f"{float(event['speed_kmh']):.0f} km/h")
        if not missing(event.get("heading_deg")):
            parts.append(f"heading {float(event['heading_deg']):.0f}°")
        return " · ".join(parts)
    if kind == "shipment.eta_updated":
        detail = f"ETA {clock(event.get('eta'))}"
        if not missing(planned_arrival) and not missing(event.get("eta")):
            minutes = (pd.Timestamp(event["eta"]) - pd.Timestamp(planned_arrival)).total_seconds()
            detail += f" ({_signed_minutes(minutes / 60)} vs plan)"
        return detail + (f" · {event['reason']}" if not missing(event.get("reason")) else "")
    if kind == "shipment.exception":
        detail = f"{text(event.get('severity')).upper()} {text(event.get('code'))}"
        if not missing(event.get("message")):
            detail += f": {event['message']}"
        if not missing(event.get("estimated_delay_minutes")):
            detail += f" · est. delay {duration(event['estimated_delay_minutes'])}"
        return detail
    if kind == "shipment.delivered":
        detail = f"Received {lines_text(event.get('lines'))}"
        if not missing(event.get("damaged_quantity")):
            detail += f" · {number(event['damaged_quantity'])} damaged"
        return detail
    if kind == "shipment.cancelled":
        return "Cancelled" + (f": {event['reason']}" if not missing(event.get("reason")) else "")
    labels = {"shipment.departed": "Left the origin", "shipment.arrived": "At the destination gate"}
    if kind in labels:
        return labels[kind] + (f" at {where}" if where else "")
    return where


def _plans_in_force(records: list[dict[str, Any]]) -> list[Any]:
    """Per event (in event time), the planned arrival of the latest plan at or before it."""
    planned: Any = None
    out = []
    for record in records:
        if record.get("event_type") == "shipment.created":
            planned = record.get("planned_arrival")
        out.append(planned)
    return out


def _records(events: pd.DataFrame) -> list[dict[str, Any]]:
    ordered = events.sort_values(["occurred_at", "event_id"], kind="stable")
    return ordered.to_dict("records")


def events_table(events: pd.DataFrame) -> pd.DataFrame:
    """Every event of a shipment for the table, newest first: time, kind, details, severity."""
    records = _records(events)
    plans = _plans_in_force(records)
    table = pd.DataFrame(
        {
            "Time": [r["occurred_at"] for r in records],
            "Event": [event_label(r["event_type"]) for r in records],
            "Details": [event_details(r, plan) for r, plan in zip(records, plans, strict=True)],
            "Severity": [
                text(r.get("severity"), "") if r["event_type"] == "shipment.exception" else ""
                for r in records
            ],
            "Event id": [r["event_id"] for r in records],
        }
    )
    return table.iloc[::-1].reset_index(drop=True)


def eta_history(events: pd.DataFrame) -> pd.DataFrame:
    """How the expected arrival moved against the plan in force: one point per plan, ETA update
    and the arrival (`at` the event time, `minutes` late (+) or early (-) against the plan)."""
    rows: list[tuple[Any, float, str]] = []
    planned: Any = None
    for record in _records(events):
        kind, at = record["event_type"], record["occurred_at"]
        if kind == "shipment.created" and not missing(record.get("planned_arrival")):
            planned = record["planned_arrival"]
            rows.append((at, 0.0, "plan"))  # a (re-)plan supersedes earlier ETAs
        elif planned is None:
            continue
        elif kind == "shipment.eta_updated" and not missing(record.get("eta")):
            minutes = (pd.Timestamp(record["eta"]) - pd.Timestamp(planned)).total_seconds() / 60
            rows.append((at, minutes, "ETA update"))
        elif kind in ARRIVALS:
            minutes = (pd.Timestamp(at) - pd.Timestamp(planned)).total_seconds() / 60
            rows.append((at, minutes, "arrival"))
            break  # arrival time is the earliest arrival (or delivery); later ETAs do not count
    return pd.DataFrame(rows, columns=["at", "minutes", "kind"])


# A slim white template: the live timeline is rebuilt and re-sent every refresh, and the full
# "plotly_white" template costs more to build and serialise than the figure itself.
_AXIS = {"gridcolor": "#ebf0f8", "linecolor": "#ebf0f8", "zerolinecolor": "#ebf0f8"}
LIGHT_TEMPLATE = go.layout.Template(
    layout={"paper_bgcolor": "white", "plot_bgcolor": "white", "xaxis": _AXIS, "yaxis": _AXIS}
)
EVENT_ROWS_DOMAIN = (0.42, 1.0)  # the upper part: one row per kind of event
ETA_DOMAIN = (0.0, 0.34)  # the lower part: the ETA against the plan


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        template=LIGHT_TEMPLATE,
        font=theme.CHART_FONT,
        height=height,
        margin={"l": 10, "r": 10, "t": 44, "b": 10},
        showlegend=False,
        hoverlabel={"bgcolor": theme.TOOLTIP_STYLE["backgroundColor"], "font_color": "#f4f6fa"},
    )
    return fig


def _vertical_mark(at: pd.Timestamp, label: str, colour: str, shift: int) -> tuple[dict, dict]:
    """A dotted line through both parts of the timeline, labelled above them."""
    line = {
        "type": "line",
        "xref": "x2",
        "x0": at,
        "x1": at,
        "yref": "paper",
        "y0": 0,
        "y1": 1,
        "line": {"dash": "dot", "color": colour, "width": 1.5},
    }
    note = {
        "x": at,
        "xref": "x2",
        "y": 1.0,
        "yref": "paper",
        "yanchor": "bottom",
        "yshift": shift,
        "text": label,
        "showarrow": False,
        "font": {"size": 11, "color": colour},
    }
    return line, note


def timeline_figure(
    events: pd.DataFrame,
    *,
    planned_departure: Any = None,
    planned_arrival: Any = None,
    tolerance_minutes: float | None = None,
    eta: Any = None,
    revision: str = "",
) -> go.Figure:
    """One shipment's events on a time axis (one row per kind of event, details on hover) over
    the ETA against the plan; dotted lines at the planned departure and arrival and at the ETA
    (of a shipment not yet arrived). `revision` keeps the user's zoom while the same shipment
    refreshes. Built in one go (shapes and annotations as lists): it refreshes every 2 s."""
    records = _records(events)
    plans = _plans_in_force(records)
    traces: list[go.Scatter] = []
    present = []
    for event_type, kind in EVENT_KINDS.items():
        chosen = [
            (r, plan)
            for r, plan in zip(records, plans, strict=True)
            if r["event_type"] == event_type
        ]
        if not chosen:
            continue
        present.append(kind.label)
        colours = [
            theme.SEVERITY_HEX.get(text(r.get("severity"), ""), kind.hex)
            if event_type == "shipment.exception"
            else kind.hex
            for r, _ in chosen
        ]
        traces.append(
            go.Scatter(
                x=[_utc(r["occurred_at"]) for r, _ in chosen],
                y=[kind.label] * len(chosen),
                xaxis="x",
                yaxis="y",
                mode="markers",
                name=kind.label,
                marker={
                    "symbol": kind.symbol,
                    "size": kind.size,
                    "color": colours,
                    "line": {"width": 1, "color": "#ffffff"},
                },
                # Plotly reads tags and entities in hover text: escape, so it shows literally.
                hovertext=[html.escape(event_details(r, plan), quote=False) for r, plan in chosen],
                hovertemplate="%{x|%d %b %H:%M:%S} UTC<br>%{hovertext}<extra>%{y}</extra>",
            )
        )
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    history = eta_history(events)
    if not history.empty:
        traces.append(
            go.Scatter(
                x=[_utc(at) for at in history["at"]],
                y=history["minutes"].round(2).tolist(),
                xaxis="x2",
                yaxis="y2",
                mode="lines+markers",
                line={"shape": "hv", "color": theme.PRIMARY_HEX, "width": 2},
                marker={"size": 7},
                name="ETA vs plan",
                hovertext=history["kind"].tolist(),
                hovertemplate="%{x|%d %b %H:%M:%S} UTC<br>%{y:+.1f} min vs plan"
                "<extra>%{hovertext}</extra>",
            )
        )
        if tolerance_minutes is not None:
            shapes.append(
                {
                    "type": "line",
                    "xref": "x2 domain",
                    "x0": 0,
                    "x1": 1,
                    "yref": "y2",
                    "y0": tolerance_minutes,
                    "y1": tolerance_minutes,
                    "line": {"dash": "dash", "color": theme.LATE.hex, "width": 1},
                }
            )
            notes.append(
                {
                    "x": 0,
                    "xref": "x2 domain",
                    "xanchor": "left",
                    "y": tolerance_minutes,
                    "yref": "y2",
                    "yanchor": "bottom",
                    "text": f"tolerance {tolerance_minutes:g} min",
                    "showarrow": False,
                    "font": {"size": 11, "color": theme.LATE.hex},
                }
            )
    marks = (
        (planned_departure, "planned departure", theme.NO_PLAN.hex, 0),
        (planned_arrival, "planned arrival", theme.NO_PLAN.hex, 0),
        (eta, "ETA", theme.INFO_HEX, 14),  # a line above: the ETA is often near planned arrival
    )
    for instant, label, colour, shift in marks:
        at = _utc(instant)
        if at is not None:
            line, note = _vertical_mark(at, label, colour, shift)
            shapes.append(line)
            notes.append(note)
    fig = go.Figure(
        data=traces,
        layout={
            "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": False},
            "yaxis": {
                "domain": EVENT_ROWS_DOMAIN,
                "anchor": "x",
                "title": {"text": EVENT_AXIS},
                "categoryorder": "array",
                "categoryarray": list(reversed(present)),  # plotly puts the first at the bottom
            },
            "xaxis2": {"anchor": "y2", "title": {"text": TIME_AXIS}},
            "yaxis2": {
                "domain": ETA_DOMAIN,
                "anchor": "x2",
                "title": {"text": ETA_AXIS},
                "zeroline": True,
                "zerolinecolor": "#9aa3b2",
            },
            "shapes": shapes,
            "annotations": notes,
            "uirevision": revision or None,
            "hovermode": "closest",
        },
    )
    return _layout(fig, 440)


def lane_label(lanes: pd.DataFrame) -> list[str]:
    return [
        f"{text(o, text(oid))} → {text(d, text(did))} · {text(m)}"
        for o, oid, d, did, m in zip(
            lanes["origin_city"],
            lanes["origin_site_id"],
            lanes["destination_city"],
            lanes["destination_site_id"],
            lanes["mode"],
            strict=True,
        )
    ]


def on_time_colour(share: Any) -> str:
    if missing(share):
        return theme.NO_PLAN.hex
    if share >= CONFIDENT_SHARE:
        return theme.ON_TIME.hex
    return theme.AT_RISK.hex if share >= SHAKY_SHARE else theme.LATE.hex


def lane_confidence_figure(lanes: pd.DataFrame) -> go.Figure:
    """Per lane: the P50-P90 range of actual transit time with the plan marked, and the share of
    deliveries that arrived on time (green from 90 %, orange from 70 %, red below)."""
    labels = lane_label(lanes)
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, column_widths=[0.68, 0.32], horizontal_spacing=0.03
    )
    counts = [f"{number(n)} deliveries" for n in lanes["delivered"]]
    fig.add_trace(
        go.Bar(
            y=labels,
            x=(lanes["p90_hours"] - lanes["p50_hours"]).tolist(),
            base=lanes["p50_hours"].tolist(),
            orientation="h",
            marker={"color": theme.PRIMARY_HEX, "opacity": 0.35},
            width=0.55,
            name="P50 to P90",
            customdata=list(zip(lanes["p50_hours"], lanes["p90_hours"], counts, strict=True)),
            hovertemplate="%{y}<br>P50 %{customdata[0]:.2f} h · P90 %{customdata[1]:.2f} h"
            "<br>%{customdata[2]}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            y=labels,
            x=lanes["p50_hours"].tolist(),
            mode="markers",
            marker={"symbol": "circle", "size": 10, "color": theme.PRIMARY_HEX},
            name="P50",
            hovertemplate="%{y}<br>P50 %{x:.2f} h<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            y=labels,
            x=lanes["planned_hours"].tolist(),
            mode="markers",
            marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": "#1f2a3a"}},
            name="Planned",
            hovertemplate="%{y}<br>planned %{x:.2f} h<extra></extra>",
        ),
        row=1,
        col=1,
    )
    shares = lanes["on_time_share"]
    fig.add_trace(
        go.Bar(
            y=labels,
            x=(shares * 100).round(1).tolist(),
            orientation="h",
            marker={"color": [on_time_colour(s) for s in shares]},
            text=[percent(s) for s in shares],
            textposition="auto",
            name="On time",
            customdata=counts,
            hovertemplate="%{y}<br>%{x:.0f} % on time of %{customdata}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(autorange="reversed", row=1, col=1)  # the most deliveries on top
    fig.update_xaxes(title_text=TRANSIT_AXIS, rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title_text=ON_TIME_AXIS, range=[0, 102], dtick=25, row=1, col=2)
    return _layout(fig, 90 + 34 * len(lanes))
