"""Pure builders of the network map: DataFrames of trucks, sites and lanes in, a pdk.Deck out."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pydeck as pdk

from dashboard import theme
from dashboard.formatting import clock, delay_text, missing, number, text

# Served by Streamlit from dashboard/static/ ([server] enableStaticServing); relative, so that
# it also works behind a base URL path. Never inlined: a live fragment would re-send it per tick.
BASEMAP_URL = "app/static/europe_countries.geojson"
# Fixed on purpose: the chart keeps the user's zoom and pan across refreshes only while the
# initial view state stays the same.
EUROPE_VIEW = pdk.ViewState(latitude=50.3, longitude=9.0, zoom=3.45, pitch=0, bearing=0)
LAYER_IDS = ("sea", "countries", "lanes", "sites", "trucks")

# A plain string prop would become a pydeck accessor expression ("@@=pixels"): mark it literal.
PIXELS = pdk.types.String("pixels")
TRUCK_RADIUS_PX = 5
SITE_RADIUS_PX = (4.0, 20.0)  # smallest (no stock) and largest (the fullest site) radius
LANE_WIDTH_PX = (1.0, 9.0)  # thinnest and widest arc
TOOLTIP = {"html": "<b>{title}</b><br/>{detail}", "style": theme.TOOLTIP_STYLE}


def _rgba(rgb: tuple[int, int, int], alpha: int = 255) -> list[int]:
    return [*rgb, alpha]


def truck_records(trucks: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per truck: position, status colour and a tooltip (plain text fields)."""
    records = []
    for row in trucks.itertuples(index=False):
        status = theme.STATUS_BY_KEY.get(text(row.delivery_status, "no_plan"), theme.NO_PLAN)
        lines = [
            f"{status.label} · {delay_text(row.delay_minutes)}",
            f"{text(row.origin_city)} → {text(row.destination_city)}",
            f"Carrier: {text(row.carrier_name, text(row.carrier_id))} · {text(row.mode, '')}",
            f"ETA: {clock(row.eta)} (planned {clock(row.planned_arrival)})",
            f"Load: {number(row.planned_quantity)} tires",
        ]
        if not missing(row.last_exception_code):
            message = text(row.last_exception_message, "")
            lines.append(
                f"Exception: {row.last_exception_code} ({text(row.last_exception_severity)})"
                + (f" {message}" if message else "")
            )
        lines.append(f"Last position: {clock(row.last_position_at)}")
        records.append(
            {
                "position": [float(row.last_lon), float(row.last_lat)],
                "color": _rgba(status.rgb),
                "status": status.key,
                "title": str(row.shipment_id),
                "detail": "\n".join(lines),
            }
        )
    return records


def _scaled(value: float, top: float, low_high: tuple[float, float]) -> float:
    low, high = low_high
    if top <= 0 or value <= 0:
        return low
    return low + (high - low) * math.sqrt(value / top)


def site_records(sites: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per site: radius by stock on hand (area proportional), colour by kind."""
    top = float(sites["on_hand"].clip(lower=0).max()) if len(sites) else 0.0
    records = []
    for row in sites.itertuples(index=False):
        on_hand = int(row.on_hand)
        kind = text(row.kind, "")
        records.append(
            {
                "position": [float(row.lon), float(row.lat)],
                "radius": _scaled(on_hand, top, SITE_RADIUS_PX),
                "color": _rgba(theme.SITE_KIND_RGB.get(kind, theme.NO_PLAN.rgb), 190),
                "title": f"{row.name} ({row.site_id})",
                "detail": "\n".join(
                    [
                        f"{theme.SITE_KIND_LABEL.get(kind, kind)} · {row.city}, {row.country}",
                        f"On hand: {number(on_hand)} tires in {number(row.skus)} SKUs",
                    ]
                ),
            }
        )
    return records


def lane_records(lanes: pd.DataFrame) -> list[dict[str, Any]]:
    """One arc per origin -> destination, width by tires in transit."""
    top = float(lanes["in_transit"].max()) if len(lanes) else 0.0
    records = []
    for row in lanes.itertuples(index=False):
        late = int(row.late_shipments)
        records.append(
            {
                "source": [float(row.origin_lon), float(row.origin_lat)],
                "target": [float(row.destination_lon), float(row.destination_lat)],
                "width": _scaled(float(row.in_transit), top, LANE_WIDTH_PX),
                "title": f"{text(row.origin_city)} → {text(row.destination_city)}",
                "detail": "\n".join(
                    [
                        f"In transit: {number(row.in_transit)} tires "
                        f"on {number(row.shipments)} shipments",
                        f"Late: {number(late)} shipments" if late else "None late",
                    ]
                ),
            }
        )
    return records


def basemap_layers(basemap_url: str = BASEMAP_URL) -> list[pdk.Layer]:
    """Sea and country outlines: the offline replacement for map tiles."""
    sea = pdk.Layer(
        "SolidPolygonLayer",
        id="sea",
        data=[{"polygon": [[-180, -85], [180, -85], [180, 85], [-180, 85]]}],
        get_polygon="polygon",
        get_fill_color=_rgba(theme.SEA_RGB),
        pickable=False,
    )
    countries = pdk.Layer(
        "GeoJsonLayer",
        id="countries",
        data=basemap_url,
        stroked=True,
        filled=True,
        get_fill_color=_rgba(theme.LAND_RGB),
        get_line_color=_rgba(theme.BORDER_RGB),
        line_width_units=PIXELS,
        get_line_width=1,
        pickable=False,
    )
    return [sea, countries]


def live_map_deck(
    trucks: pd.DataFrame,
    sites: pd.DataFrame,
    lanes: pd.DataFrame,
    *,
    basemap_url: str = BASEMAP_URL,
    view: pdk.ViewState = EUROPE_VIEW,
) -> pdk.Deck:
    """The network at one moment: lanes under sites under trucks, the worst trucks on top."""
    lane_layer = pdk.Layer(
        "ArcLayer",
        id="lanes",
        data=lane_records(lanes),
        get_source_position="source",
        get_target_position="target",
        get_source_color=_rgba(theme.LANE_SOURCE_RGB, 110),
        get_target_color=_rgba(theme.LANE_TARGET_RGB, 110),
        get_width="width",
        width_units=PIXELS,
        get_height=0.35,
        great_circle=False,
        pickable=True,
        auto_highlight=True,
    )
    site_layer = pdk.Layer(
        "ScatterplotLayer",
        id="sites",
        data=site_records(sites),
        get_position="position",
        get_radius="radius",
        radius_units=PIXELS,
        get_fill_color="color",
        get_line_color=[255, 255, 255, 230],
        line_width_units=PIXELS,
        get_line_width=1.5,
        stroked=True,
        pickable=True,
        auto_highlight=True,
    )
    truck_layer = pdk.Layer(
        "ScatterplotLayer",
        id="trucks",
        data=truck_records(trucks),
        get_position="position",
        get_radius=TRUCK_RADIUS_PX,
        radius_units=PIXELS,
        get_fill_color="color",
        get_line_color=[255, 255, 255, 255],
        line_width_units=PIXELS,
        get_line_width=1,
        stroked=True,
        pickable=True,
        auto_highlight=True,
    )
    return pdk.Deck(
        layers=[*basemap_layers(basemap_url), lane_layer, site_layer, truck_layer],
        initial_view_state=view,
        map_provider=None,
        tooltip=TOOLTIP,
    )
