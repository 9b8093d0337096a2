"""Tiretrack dashboard entry point: page navigation, shared filters, freshness on every page.

Run with `tiretrack dashboard` (or `streamlit run dashboard/app.py -- --db PATH`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import streamlit as st

from dashboard import components, queries
from dashboard.filters import FILTER_NAMES, FilterOptions, Filters, clean, from_query_params
from dashboard.formatting import escape_markdown

ALL_ROLES = frozenset({"planner", "manager", "analyst", "admin"})


@dataclass(frozen=True)
class PageSpec:
    """A page and the roles allowed to see it (enforced once login exists)."""

    path: str
    title: str
    icon: str
    roles: frozenset[str]
    default: bool = False


PAGES = (
    PageSpec("app_pages/live_map.py", "Live map", "🗺️", ALL_ROLES, default=True),
    PageSpec(
        "app_pages/delays.py",
        "Delays & exceptions",
        "⏱️",
        frozenset({"planner", "analyst", "admin"}),
    ),
    PageSpec(
        "app_pages/pipeline_health.py",
        "Pipeline health",
        "🩺",
        frozenset({"planner", "analyst", "admin"}),
    ),
)
FILTER_LABELS = {"region": "Region", "carrier": "Carrier", "mode": "Mode", "status": "Status"}


def current_role() -> str | None:
    """The signed-in user's role; None while no users are configured (the open demo)."""
    return None


def visible_pages(role: str | None) -> list[st.Page]:
    return [
        st.Page(p.path, title=p.title, icon=p.icon, default=p.default)
        for p in PAGES
        if role is None or role in p.roles
    ]


def _widget_key(name: str) -> str:
    return f"filter_{name}"


def _clear_filters() -> None:
    for name in FILTER_NAMES:
        st.session_state[_widget_key(name)] = []


def sidebar_filters(options: FilterOptions) -> Filters:
    """Multiselects seeded from the URL, and the URL kept in step with them (shareable views)."""
    from_url = from_query_params(
        {name: st.query_params.get_all(name) for name in FILTER_NAMES}, options
    )
    st.sidebar.subheader("Filters")
    chosen: dict[str, tuple[str, ...]] = {}
    for name in FILTER_NAMES:
        key = _widget_key(name)
        if key not in st.session_state:
            st.session_state[key] = list(getattr(from_url, name))
        chosen[name] = clean(
            st.sidebar.multiselect(
                FILTER_LABELS[name],
                options.allowed(name),
                key=key,
                format_func=functools.partial(options.label, name),
                placeholder="All",
            ),
            options.allowed(name),
        )
    filters = Filters(**chosen)
    for name in FILTER_NAMES:
        values = list(getattr(filters, name))
        if values:
            if st.query_params.get_all(name) != values:
                st.query_params[name] = values
        elif name in st.query_params:
            del st.query_params[name]
    if not filters.is_empty():
        st.sidebar.button("Clear filters", on_click=_clear_filters, width="stretch")
    return filters


def sidebar_footer(role: str | None) -> None:
    st.sidebar.divider()
    if role is None:
        st.sidebar.caption("🔓 Open demo: no users are configured, so every page is open to all.")
    st.sidebar.caption(f"Database: {escape_markdown(str(queries.database_path()))}")
    st.sidebar.caption("All times in UTC.")


st.set_page_config(page_title="Tiretrack", page_icon="🛞", layout="wide")
role = current_role()
navigation = st.navigation(visible_pages(role))
st.session_state[components.FILTERS_KEY] = sidebar_filters(queries.options())
sidebar_footer(role)
if components.check_worker():
    navigation.run()
