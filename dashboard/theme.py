"""The dashboard's visual vocabulary: one status palette, site and map colours, chart styling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DeliveryStatus:
    """How a shipment is doing against its plan; the same colour on every page."""

    key: str
    label: str
    rgb: RGB
    meaning: str
    color_name: str  # Streamlit's markdown colour set to the same hex in .streamlit/config.toml

    @property
    def hex(self) -> str:
        return hex_colour(self.rgb)

    @property
    def marker(self) -> str:
        """A coloured dot and the label, as Streamlit markdown (metric labels, captions)."""
        return f":{self.color_name}[●] {self.label}"


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# In precedence order: a shipment gets the first that applies (see queries.DELIVERY_STATUS_SQL).
LATE: Final = DeliveryStatus(
    "late", "Late", (214, 48, 49), "overdue beyond the on-time tolerance, or arrived late", "red"
)
AT_RISK: Final = DeliveryStatus(
    "at_risk",
    "At risk",
    (240, 147, 43),
    "the ETA lies beyond planned arrival plus tolerance",
    "orange",
)
EXCEPTION: Final = DeliveryStatus(
    "exception",
    "Exception",
    (142, 68, 173),
    "on time so far, with a warning or critical exception",
    "violet",
)
ON_TIME: Final = DeliveryStatus(
    "on_time", "On time", (32, 153, 99), "within the on-time tolerance", "green"
)
NO_PLAN: Final = DeliveryStatus(
    "no_plan",
    "No plan",
    (140, 146, 156),
    "no shipment.created received yet: cannot be judged",
    "gray",
)

DELIVERY_STATUSES: Final = (ON_TIME, AT_RISK, LATE, EXCEPTION)  # the ones a user filters on
STATUS_BY_KEY: Final = {s.key: s for s in (*DELIVERY_STATUSES, NO_PLAN)}

# Exception severities reuse the status colours so that "critical" reads like "late".
SEVERITY_ORDER: Final = ("critical", "warning", "info")
INFO_HEX: Final = "#5b8def"  # Streamlit's "blue" in config.toml
SEVERITY_HEX: Final = {"critical": LATE.hex, "warning": AT_RISK.hex, "info": INFO_HEX}
SEVERITY_COLOR_NAME: Final = {"critical": "red", "warning": "orange", "info": "blue"}

SITE_KIND_RGB: Final[dict[str, RGB]] = {
    "plant": (44, 62, 102),
    "dc": (22, 128, 140),
    "distributor": (99, 124, 160),
}
SITE_KIND_LABEL: Final = {
    "plant": "Plant",
    "dc": "Distribution centre",
    "distributor": "Distributor",
}

# Basemap: pale sea, warm land, quiet borders, so the status colours stand out.
SEA_RGB: Final = (207, 223, 236)
LAND_RGB: Final = (248, 246, 241)
BORDER_RGB: Final = (176, 181, 192)
LANE_SOURCE_RGB: Final = (52, 96, 180)
LANE_TARGET_RGB: Final = (22, 160, 190)
TOOLTIP_STYLE: Final = {
    "backgroundColor": "#1f2a3a",
    "color": "#f4f6fa",
    "fontFamily": "sans-serif",
    "fontSize": "12px",
    "padding": "8px 10px",
    "borderRadius": "6px",
    "whiteSpace": "pre-line",
    "maxWidth": "340px",
}

PRIMARY_HEX: Final = "#2b5fae"
CHART_FONT: Final = {"family": "sans-serif", "size": 12, "color": "#31333f"}


def cell_css(value: object) -> str:
    """CSS for a table cell holding a status label or a severity: its colour, in bold."""
    colour = _CELL_COLOURS.get(value) if isinstance(value, str) else None
    return f"color: {colour}; font-weight: 600" if colour else ""


_CELL_COLOURS: Final = {s.label: s.hex for s in STATUS_BY_KEY.values()} | SEVERITY_HEX
