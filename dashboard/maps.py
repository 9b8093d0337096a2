"""Pure builders of the network map: DataFrames of trucks, sites and lanes in, a pdk.Deck out."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
# With a shipment selected: its path and stops under the trucks, a ring around it on top.
FOCUS_LAYER_IDS = ("sea", "countries", "lanes", "sites", "path", "stops", "trucks", "selected")

# A plain string prop would become a pydeck accessor expression ("@@=pixels"): mark it literal.
PIXELS = pdk.types.String("pixels")
TRUCK_RADIUS_PX = 5
SITE_RADIUS_PX = (4.0, 20.0)  # smallest (no stock) and largest (the fullest site) radius
LANE_WIDTH_PX = (1.0, 9.0)  # thinnest and widest arc
PATH_WIDTH_PX = 5
FADED_TRUCK_ALPHA = 110  # other trucks while a shipment is selected
FADED_LANE_ALPHA = 50
STOP_RGB: theme.RGB = (31, 42, 58)  # the tooltip's ink: stops and the ring read as "selected"
SELECTED_RING_PX = 11
# The map's size in pixels, roughly, for fitting a shipment's origin and destination in view.
FIT_PX = (900, 640)
FIT_ZOOM = (3.0, 7.5)
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


@dataclass(frozen=True)
class ShipmentFocus:
    """One shipment drawn over the network: its path so far, its stops, where it is now."""

    shipment_id: str
    path: list[list[float]]  # [lon, lat] of every position report, in event time
    stops: list[dict[str, Any]]  # origin and destination markers
    current: list[float] | None  # [lon, lat] of the last position
    rgb: theme.RGB  # its delivery status colour
    detail: str  # the path's tooltip
    view: pdk.ViewState  # origin and destination in view (stable while the path grows)


def track_points(events: pd.DataFrame) -> list[list[float]]:
    """[lon, lat] of the events that carry a position (every such event is a position report,
    the contract says), in event time."""
    if events.empty:
        return []
    located = events[events["lat"].notna() & events["lon"].notna()]
    located = located.sort_values(["occurred_at", "event_id"], kind="stable")
    return [
        [float(lon), float(lat)] for lon, lat in zip(located["lon"], located["lat"], strict=True)
    ]


def _mercator_y(lat: float) -> float:
    return math.degrees(math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)))


def _latitude(mercator_y: float) -> float:
    return math.degrees(2 * math.atan(math.exp(math.radians(mercator_y))) - math.pi / 2)


def fit_view(points: list[list[float]], *, padding: float = 1.5) -> pdk.ViewState:
    """A view with every [lon, lat] point in it (Web Mercator), zoom clamped to FIT_ZOOM."""
    if not points:
        return EUROPE_VIEW
    lons = [p[0] for p in points]
    ys = [_mercator_y(max(min(p[1], 85.0), -85.0)) for p in points]
    # deck.gl's world is 512 px wide at zoom 0: at zoom z a pixel spans 360 / (512 * 2**z)
    # degrees of longitude (and of Mercator y, in degrees).
    per_px = max((max(lons) - min(lons)) / FIT_PX[0], (max(ys) - min(ys)) / FIT_PX[1]) * padding
    zoom = FIT_ZOOM[1] if per_px <= 0 else math.log2(360 / (512 * per_px))
    return pdk.ViewState(
        latitude=round(_latitude((max(ys) + min(ys)) / 2), 5),
        longitude=round((max(lons) + min(lons)) / 2, 5),
        zoom=round(min(max(zoom, FIT_ZOOM[0]), FIT_ZOOM[1]), 2),
        pitch=0,
        bearing=0,
    )


def _stop(kind: str, name: Any, city: Any, lat: Any, lon: Any) -> dict[str, Any] | None:
    if missing(lat) or missing(lon):
        return None
    return {
        "position": [float(lon), float(lat)],
        "fill": [255, 255, 255, 255] if kind == "Origin" else _rgba(STOP_RGB),
        "title": f"{kind}: {text(name)}",
        "detail": text(city),
    }


def shipment_focus(summary: pd.Series, events: pd.DataFrame) -> ShipmentFocus:
    """What the map draws for a selected shipment: `summary` is its row of the shipment query,
    `events` its events up to the map's instant."""
    status = theme.STATUS_BY_KEY.get(text(summary["delivery_status"], "no_plan"), theme.NO_PLAN)
    path = track_points(events)
    stops = [
        stop
        for stop in (
            _stop(
                "Origin",
                summary["origin_name"],
                summary["origin_city"],
                summary["origin_lat"],
                summary["origin_lon"],
            ),
            _stop(
                "Destination",
                summary["destination_name"],
                summary["destination_city"],
                summary["destination_lat"],
                summary["destination_lon"],
            ),
        )
        if stop is not None
    ]
    if path:
        times = events.loc[events["lat"].notna() & events["lon"].notna(), "occurred_at"]
        detail = (
            f"Path so far: {number(len(path))} position reports\n"
            f"from {clock(times.min())} to {clock(times.max())}"
        )
    else:
        detail = "No position reported yet"
    # Fit origin and destination (they do not move); without a plan, where it was first seen.
    anchors = [stop["position"] for stop in stops] or path[:1]
    return ShipmentFocus(
        shipment_id=str(summary["shipment_id"]),
        path=path,
        stops=stops,
        current=path[-1] if path else None,
        rgb=status.rgb,
        detail=detail,
        view=fit_view(anchors),
    )


def focus_layers(focus: ShipmentFocus) -> tuple[list[pdk.Layer], list[pdk.Layer]]:
    """The selected shipment's layers: (under the trucks, over the trucks)."""
    path = pdk.Layer(
        "PathLayer",
        id="path",
        data=[{"path": focus.path, "title": focus.shipment_id, "detail": focus.detail}]
        if focus.path
        else [],
        get_path="path",
        get_color=_rgba(focus.rgb, 230),
        get_width=PATH_WIDTH_PX,
        width_units=PIXELS,
        cap_rounded=True,
        joint_rounded=True,
        pickable=True,
    )
    stops = pdk.Layer(
        "ScatterplotLayer",
        id="stops",
        data=focus.stops,
        get_position="position",
        get_radius=7,
        radius_units=PIXELS,
        get_fill_color="fill",
        get_line_color=_rgba(STOP_RGB),
        line_width_units=PIXELS,
        get_line_width=2.5,
        stroked=True,
        pickable=True,
    )
    ring = pdk.Layer(
        "ScatterplotLayer",
        id="selected",
        data=[{"position": focus.current, "title": focus.shipment_id, "detail": focus.detail}]
        if focus.current
        else [],
        get_position="position",
        get_radius=SELECTED_RING_PX,
        radius_units=PIXELS,
        filled=False,
        stroked=True,
        get_line_color=_rgba(STOP_RGB),
        line_width_units=PIXELS,
        get_line_width=3,
        pickable=True,
    )
    return [path, stops], [ring]


def live_map_deck(
    trucks: pd.DataFrame,
    sites: pd.DataFrame,
    lanes: pd.DataFrame,
    *,
    basemap_url: str = BASEMAP_URL,
    focus: ShipmentFocus | None = None,
) -> pdk.Deck:
    """The network at one moment: lanes under sites under trucks, the worst trucks on top; a
    selected shipment's path and stops under the trucks and a ring around it on top, the rest
    faded. The view is Europe, or the selected shipment's origin and destination."""
    trucks_data = truck_records(trucks)
    lane_alpha = 110
    if focus is not None:  # the selected shipment stands out; the others keep their colours
        lane_alpha = FADED_LANE_ALPHA
        for record in trucks_data:
            if record["title"] != focus.shipment_id:
                record["color"][3] = FADED_TRUCK_ALPHA
    lane_layer = pdk.Layer(
        "ArcLayer",
        id="lanes",
        data=lane_records(lanes),
        get_source_position="source",
        get_target_position="target",
        get_source_color=_rgba(theme.LANE_SOURCE_RGB, lane_alpha),
        get_target_color=_rgba(theme.LANE_TARGET_RGB, lane_alpha),
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
        data=trucks_data,
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
    under, over = focus_layers(focus) if focus is not None else ([], [])
    return pdk.Deck(
        layers=[*basemap_layers(basemap_url), lane_layer, site_layer, *under, truck_layer, *over],
        initial_view_state=focus.view if focus is not None else EUROPE_VIEW,
        map_provider=None,
        tooltip=TOOLTIP,
    )
