"""Pure builders of the inventory and KPI pages: DataFrames in, plotly Figures and texts out.

Every axis says its unit; status colours come from `dashboard.theme`, site kinds keep the
map's colours, and nothing here touches Streamlit or the database.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import theme
from dashboard.formatting import MISSING, duration, missing

TIME_AXIS = "Time (UTC)"
TIRES_ON_HAND_AXIS = "Tires on hand"
TIRES_IN_TRANSIT_AXIS = "Tires in transit"
KIND_ORDER: Final = ("plant", "dc", "distributor")
KIND_X: Final = {"plant": 0.001, "dc": 0.5, "distributor": 0.999}
SANKEY_PAD_PX: Final = 6
TOP_LANES: Final = 15  # lanes a bar chart shows; tables list them all
# Tire segments (not statuses): quiet blues and teals next to the status palette.
SEGMENT_HEX: Final = {
    "passenger": "#2b5fae",
    "van": "#16808c",
    "truck": "#7a8aa6",
    "agricultural": "#b08d57",
}
OTHER_HEX: Final = "#b8bfcc"
UNKNOWN_SITE_RGB: Final = (140, 146, 156)  # a site missing from the reference data
SERIES_HEX: Final = (
    "#2b5fae",
    "#16a0be",
    "#b08d57",
    "#7a5195",
    "#5f8f3e",
    "#c05780",
    "#44546a",
    "#d4a017",
    "#6c8ebf",
    "#8c564b",
)


def _layout(fig: go.Figure, *, x_title: str, y_title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        font=theme.CHART_FONT,
        height=height,
        margin={"l": 10, "r": 10, "t": 36, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title=x_title,
        yaxis_title=y_title,
    )
    return fig


def rgba(rgb: theme.RGB, alpha: float) -> str:
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha})"


def lane_label(origin: Any, destination: Any) -> str:
    return f"{'?' if missing(origin) else origin} → {'?' if missing(destination) else destination}"


# --- inventory: flows between sites ---


def sankey(links: pd.DataFrame, measure_label: str) -> go.Figure:
    """Plants on the left, distribution centres in the middle, distributors on the right; link
    width = tires. Nodes keep the map's site-kind colours; links take their origin's colour."""
    sites: dict[str, dict[str, Any]] = {}
    for side in ("origin", "destination"):
        for row in links.itertuples(index=False):
            site = sites.setdefault(
                getattr(row, f"{side}_site_id"),
                {
                    "name": getattr(row, f"{side}_name"),
                    "kind": getattr(row, f"{side}_kind"),
                    "city": getattr(row, f"{side}_city"),
                    "origin": 0,
                    "destination": 0,
                },
            )
            site[side] += int(row.tires)
    for site in sites.values():  # a node is as tall as the larger of what came in and went out
        site["tires"] = max(site["origin"], site["destination"])
    kinds = {sid: (s["kind"] if s["kind"] in KIND_X else "unknown") for sid, s in sites.items()}
    order = sorted(
        sites,
        key=lambda sid: (
            KIND_ORDER.index(kinds[sid]) if kinds[sid] in KIND_ORDER else 3,
            -sites[sid]["tires"],
            sid,
        ),
    )
    index = {sid: i for i, sid in enumerate(order)}
    height = max(420, 24 * max(Counter(kinds.values()).values(), default=0) + 90)
    margin = {"l": 10, "r": 10, "t": 40, "b": 10}
    sizes = {sid: float(max(site["tires"], 1)) for sid, site in sites.items()}
    xs, ys = _node_positions(order, kinds, sizes, height - margin["t"] - margin["b"])
    colours = [
        theme.hex_colour(theme.SITE_KIND_RGB.get(kinds[sid], UNKNOWN_SITE_RGB)) for sid in order
    ]
    labels = [str(sites[sid]["name"]) if not missing(sites[sid]["name"]) else sid for sid in order]
    node_text = [
        f"{theme.SITE_KIND_LABEL.get(kinds[sid], 'Unknown site')} · "
        f"{sites[sid]['city'] if not missing(sites[sid]['city']) else sid}"
        for sid in order
    ]
    link_colours = [
        rgba(theme.SITE_KIND_RGB.get(kinds[o], UNKNOWN_SITE_RGB), 0.35)
        for o in links["origin_site_id"]
    ]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            valueformat=",d",
            valuesuffix=" tires",
            node={
                "label": labels,
                "color": colours,
                "x": xs,
                "y": ys,
                "pad": SANKEY_PAD_PX,
                "thickness": 14,
                "line": {"color": "white", "width": 0.5},
                "customdata": node_text,
                "hovertemplate": "%{label}<br>%{customdata}<br>%{value} tires<extra></extra>",
            },
            link={
                "source": [index[s] for s in links["origin_site_id"]],
                "target": [index[d] for d in links["destination_site_id"]],
                "value": [int(v) for v in links["tires"]],
                "color": link_colours,
                "customdata": [int(v) for v in links["shipments"]],
                "hovertemplate": (
                    "%{source.label} → %{target.label}<br>%{value} tires "
                    f"{measure_label.lower()} in %{{customdata}} shipments<extra></extra>"
                ),
            },
        )
    )
    fig.update_layout(
        template="plotly_white",
        font={**theme.CHART_FONT, "size": 11},
        height=height,
        margin=margin,
    )
    for kind, x in KIND_X.items():  # column headings say what each column is
        fig.add_annotation(
            x=x,
            y=1.0,
            yanchor="bottom",
            yshift=6,
            xref="paper",
            yref="paper",
            text=f"<b>{theme.SITE_KIND_LABEL[kind]}s</b>",
            showarrow=False,
            xanchor={"plant": "left", "dc": "center", "distributor": "right"}[kind],
            font={"size": 12, "color": theme.hex_colour(theme.SITE_KIND_RGB[kind])},
        )
    return fig


def _node_positions(
    order: list[str], kinds: Mapping[str, str], sizes: Mapping[str, float], plot_px: float
) -> tuple[list[float], list[float]]:
    """Columns by site kind; within a column, nodes stacked in order without overlap.

    Plotly draws every node `size * scale` pixels tall with one scale for the whole figure (the
    one that lets the fullest column fit) and `SANKEY_PAD_PX` between nodes; y is a node's
    centre as a share of the plot height. Computing the same here keeps "snap" from pushing
    nodes off the bottom."""
    columns: dict[str, list[str]] = {}
    for sid in order:
        columns.setdefault(kinds[sid], []).append(sid)
    scale = min(
        (plot_px - (len(ids) - 1) * SANKEY_PAD_PX) / max(sum(sizes[i] for i in ids), 1.0)
        for ids in columns.values()
    )
    position: dict[str, tuple[float, float]] = {}
    for kind, ids in columns.items():
        top = 0.0
        for sid in ids:
            height = sizes[sid] * scale
            position[sid] = (KIND_X.get(kind, 0.25), (top + height / 2) / plot_px)
            top += height + SANKEY_PAD_PX
    return [position[sid][0] for sid in order], [position[sid][1] for sid in order]


# --- inventory: stock over time ---


def stock_history(history: pd.DataFrame, labels: Mapping[str, str] | None = None) -> go.Figure:
    """One line per SKU: tires on hand at each instant read (gaps before the first record)."""
    labels = labels or {}
    fig = go.Figure()
    for i, (sku, part) in enumerate(history.groupby("sku", sort=True)):
        name = labels.get(str(sku), str(sku))
        fig.add_scatter(
            x=part["at"].tolist(),
            y=[None if missing(v) else int(v) for v in part["on_hand"]],
            mode="lines",
            name=name,
            line={"color": SERIES_HEX[i % len(SERIES_HEX)], "width": 2},
            hovertemplate=f"{name}<br>%{{x|%d %b %H:%M:%S}} UTC: %{{y:,}} tires<extra></extra>",
        )
    fig.update_layout(hovermode="x unified")
    fig.update_yaxes(rangemode="tozero", tickformat=",d")
    return _layout(fig, x_title=TIME_AXIS, y_title=TIRES_ON_HAND_AXIS, height=380)


# --- inventory: in transit ---


def in_transit_by_lane(lanes: pd.DataFrame, top: int = TOP_LANES) -> go.Figure:
    """The `top` lanes with the most tires on the road, stacked by tire segment."""
    frame = lanes.assign(
        lane=[
            lane_label(o, d)
            for o, d in zip(lanes["origin_city"], lanes["destination_city"], strict=True)
        ],
        segment=lanes["segment"].fillna("other"),
    )
    totals = frame.groupby("lane")["tires"].sum().sort_values(ascending=False).head(top)
    shown = frame[frame["lane"].isin(totals.index)]
    fig = go.Figure()
    segments = [s for s in SEGMENT_HEX if s in set(shown["segment"])]
    segments += sorted(set(shown["segment"]) - set(SEGMENT_HEX))
    for segment in segments:
        part = shown[shown["segment"] == segment].groupby("lane")["tires"].sum()
        fig.add_bar(
            y=list(part.index),
            x=[int(v) for v in part.values],
            orientation="h",
            name=segment.replace("_", " ").capitalize(),
            marker_color=SEGMENT_HEX.get(segment, OTHER_HEX),
            hovertemplate="%{y}: %{x:,} " + segment + " tires<extra></extra>",
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(totals.index)))
    fig.update_xaxes(tickformat=",d")
    return _layout(
        fig, x_title=TIRES_IN_TRANSIT_AXIS, y_title="Lane (origin → destination)",
        height=max(300, 26 * len(totals) + 90),
    )  # fmt: skip


# --- KPIs: throughput and transit time ---


def throughput(buckets: pd.DataFrame, bucket: dt.timedelta, bucket_label: str) -> go.Figure:
    """Tires (top) and shipments (bottom) delivered per bucket, bars at the bucket's middle."""
    middle = [pd.Timestamp(b) + pd.Timedelta(bucket) / 2 for b in buckets["bucket_start"]]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.add_bar(
        x=middle,
        y=[int(v) for v in buckets["tires"]],
        name="Tires delivered",
        marker_color=theme.PRIMARY_HEX,
        hovertemplate="%{x|%d %b %H:%M} UTC: %{y:,} tires<extra></extra>",
        row=1,
        col=1,
    )
    fig.add_bar(
        x=middle,
        y=[int(v) for v in buckets["shipments"]],
        name="Shipments delivered",
        marker_color=theme.hex_colour(theme.SITE_KIND_RGB["dc"]),
        hovertemplate="%{x|%d %b %H:%M} UTC: %{y:,} shipments<extra></extra>",
        row=2,
        col=1,
    )
    fig.update_layout(bargap=0.15)
    fig.update_yaxes(title_text=f"Tires / {bucket_label}", tickformat=",d", row=1, col=1)
    fig.update_yaxes(title_text=f"Shipments / {bucket_label}", tickformat=",d", row=2, col=1)
    fig.update_xaxes(title_text="Delivery time (UTC)", row=2, col=1)
    fig.update_layout(
        template="plotly_white",
        font=theme.CHART_FONT,
        height=380,
        margin={"l": 10, "r": 10, "t": 36, "b": 10},
        showlegend=False,
    )
    return fig


@dataclass(frozen=True)
class DurationUnit:
    label: str  # "hours" or "minutes"
    per_hour: float  # how many of this unit in an hour


HOURS: Final = DurationUnit("hours", 1.0)
MINUTES: Final = DurationUnit("minutes", 60.0)


def duration_unit(hours: pd.Series) -> DurationUnit:
    """Hours for real-world transit times; minutes when every value is under two hours (the
    demo's simulator shrinks 9-hour trips to 9 minutes)."""
    values = hours.dropna().abs()
    return MINUTES if values.empty or float(values.max()) < 2 else HOURS


def lane_duration_unit(lanes: pd.DataFrame) -> DurationUnit:
    """One unit for a lane table or chart: of its average, P90 and planned transit times."""
    return duration_unit(
        pd.concat([lanes["avg_hours"], lanes["p90_hours"], lanes["planned_hours"]])
    )


def lane_transit(lanes: pd.DataFrame, tolerance_minutes: float, top: int = TOP_LANES) -> go.Figure:
    """Per lane: average transit (bar; late colour when it exceeds plan by more than the
    tolerance), P90 (diamond) and plan (tick). The `top` lanes furthest over plan."""
    shown = lanes.head(top).iloc[::-1]  # worst on top
    unit = lane_duration_unit(lanes)
    scale = unit.per_hour
    labels = [
        f"{lane_label(o, d)} ({m})"
        for o, d, m in zip(
            shown["origin_city"], shown["destination_city"], shown["mode"], strict=True
        )
    ]
    over_minutes = (shown["over_plan_hours"] * 60).round(1)
    late = [not missing(v) and v > tolerance_minutes for v in over_minutes]
    fig = go.Figure()
    for status, name in (
        (theme.ON_TIME, "Average, within tolerance"),
        (theme.LATE, "Average, late"),
    ):
        keep = [is_late == (status is theme.LATE) for is_late in late]
        fig.add_bar(
            y=[label for label, k in zip(labels, keep, strict=True) if k],
            x=(shown["avg_hours"][keep] * scale).tolist(),
            orientation="h",
            name=name,
            marker_color=status.hex,
            customdata=list(
                zip(shown["shipments"][keep], over_minutes[keep], strict=True)
            ),
            hovertemplate=(
                "%{y}<br>average %{x:.1f} " + unit.label
                + "<br>%{customdata[1]:+} min against plan · %{customdata[0]} shipments"
                "<extra></extra>"
            ),
        )  # fmt: skip
    fig.add_scatter(
        y=labels,
        x=(shown["p90_hours"] * scale).tolist(),
        mode="markers",
        name="P90 transit",
        marker={"symbol": "diamond", "size": 9, "color": "#31333f"},
        hovertemplate="%{y}<br>P90 %{x:.1f} " + unit.label + "<extra></extra>",
    )
    fig.add_scatter(
        y=labels,
        x=(shown["planned_hours"] * scale).tolist(),
        mode="markers",
        name="Plan",
        marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": "#31333f"}},
        hovertemplate="%{y}<br>plan %{x:.1f} " + unit.label + "<extra></extra>",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=labels)
    fig.update_layout(barmode="overlay")
    return _layout(
        fig, x_title=f"Transit time ({unit.label})", y_title="Lane (origin → destination)",
        height=max(300, 26 * len(shown) + 110),
    )  # fmt: skip


# --- KPI tile texts ---


def rate_text(share: Any) -> str:
    """A rate as '87.5 %' (one decimal: a KPI moves by tenths)."""
    return MISSING if missing(share) else f"{100 * float(share):.1f} %"


def rate_delta(current: Any, previous: Any) -> str | None:
    """The change of a rate in percentage points ('+2.1 pts'); None without both values."""
    if missing(current) or missing(previous):
        return None
    return f"{100 * (float(current) - float(previous)):+.1f} pts"


def count_delta(current: Any, previous: Any) -> str | None:
    if missing(current) or missing(previous):
        return None
    return f"{round(float(current) - float(previous)):+,}"


def minutes_delta(current: Any, previous: Any) -> str | None:
    """A change of a duration given in minutes: '+12 s', '-3.5 min', '+2.1 h'."""
    if missing(current) or missing(previous):
        return None
    change = float(current) - float(previous)
    if abs(change) < 1:
        return f"{change * 60:+.0f} s"
    return f"{change:+.1f} min" if abs(change) < 120 else f"{change / 60:+.1f} h"


def cover_text(days_of_supply: Any, available: Any) -> str:
    """Days of supply as a duration ('3 d 04 h'); 'out of stock' with nothing on hand or on the
    way; 'no sales' when there is nothing to divide by."""
    if not missing(available) and float(available) <= 0:
        return "out of stock"
    if missing(days_of_supply):
        return "no sales"
    return duration(float(days_of_supply) * 1440)


def per_100_text(value: Any) -> str:
    return MISSING if missing(value) else f"{float(value):.1f}"


def per_100_delta(current: Any, previous: Any) -> str | None:
    if missing(current) or missing(previous):
        return None
    return f"{float(current) - float(previous):+.1f}"
