"""Pure chart builders: a DataFrame in, a plotly Figure out, every axis titled with its unit."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard import theme

DELAY_AXIS = "Delay at arrival (minutes)"
EXCEPTIONS_AXIS = "Exceptions (count)"
OFFSET_AXIS = "Messages (Kafka offset)"


def _layout(fig: go.Figure, *, x_title: str, y_title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        font=theme.CHART_FONT,
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title=x_title,
        yaxis_title=y_title,
    )
    return fig


def delay_by_carrier(stats: pd.DataFrame, tolerance_minutes: float | None = None) -> go.Figure:
    """A horizontal box per carrier from statistics computed on the worker (whiskers: P5, P95)."""
    labels = stats["carrier_name"].fillna(stats["carrier_id"]).astype(str).tolist()
    fig = go.Figure(
        go.Box(
            y=labels,
            q1=stats["q1"].tolist(),
            median=stats["median"].tolist(),
            q3=stats["q3"].tolist(),
            lowerfence=stats["p05"].tolist(),
            upperfence=stats["p95"].tolist(),
            mean=stats["mean"].tolist(),
            orientation="h",
            name="Delay at arrival",
            marker_color=theme.PRIMARY_HEX,
            hoverinfo="y+x",
        )
    )
    if tolerance_minutes is not None:
        fig.add_vline(
            x=tolerance_minutes,
            line_dash="dash",
            line_color=theme.LATE.hex,
            annotation_text=f"on-time tolerance ({tolerance_minutes:g} min)",
            annotation_position="top right",
            annotation_yshift=18,  # above the first box
        )
    fig.update_layout(showlegend=False)
    fig.update_yaxes(autorange="reversed")  # carriers top to bottom in id order
    return _layout(fig, x_title=DELAY_AXIS, y_title="Carrier")


def exceptions_by_code(summary: pd.DataFrame) -> go.Figure:
    """Open shipments' exceptions stacked by severity, one bar per exception code."""
    fig = go.Figure()
    for severity in reversed(theme.SEVERITY_ORDER):  # critical on top of the stack
        part = summary[summary["severity"] == severity]
        fig.add_bar(
            x=part["code"].tolist(),
            y=part["exceptions"].tolist(),
            name=severity.capitalize(),
            marker_color=theme.SEVERITY_HEX[severity],
            hovertemplate="%{x}: %{y} " + severity + " exceptions<extra></extra>",
        )
    fig.update_layout(barmode="stack")
    return _layout(fig, x_title="Exception code", y_title=EXCEPTIONS_AXIS)


def partition_progress(positions: pd.DataFrame) -> go.Figure:
    """Per partition: messages stored (next offset) and, stacked on top, the lag still to read."""
    labels = [f"{t}[{p}]" for t, p in zip(positions["topic"], positions["partition"], strict=True)]
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=positions["next_offset"].tolist(),
        name="Stored",
        marker_color=theme.PRIMARY_HEX,
        hovertemplate="%{x}: %{y:,} messages stored<extra></extra>",
    )
    fig.add_bar(
        x=labels,
        y=positions["lag"].fillna(0).tolist(),
        name="Lag",
        marker_color=theme.AT_RISK.hex,
        hovertemplate="%{x}: %{y:,} messages behind<extra></extra>",
    )
    fig.update_layout(barmode="stack")
    return _layout(fig, x_title="Topic [partition]", y_title=OFFSET_AXIS, height=300)
