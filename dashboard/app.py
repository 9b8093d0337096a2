"""Tiretrack dashboard entry point: who may see which page, shared filters, freshness banner.

Run with `tiretrack dashboard` (or `streamlit run dashboard/app.py -- --db PATH`). Access is
configured in `.streamlit/secrets.toml` and the pages of each role are `auth.PAGES` (see
`dashboard/auth.py`); `st.navigation` only ever gets the pages of the signed-in role, so any
other page has no URL in that session.
"""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from dashboard import auth, components, queries
from dashboard.filters import FILTER_NAMES, FilterOptions, Filters, clean, from_query_params
from dashboard.formatting import escape_markdown

FILTER_LABELS = {
    "region": "Region",
    "plant": "Plant (origin)",
    "distributor": "Distributor (destination)",
    "carrier": "Carrier",
    "mode": "Mode",
    "segment": "Segment",
    "sku": "SKU",
    "status": "Status",
}
FILTER_HELP = {
    "plant": "Shipments leaving these plants; on stock views, these plants' own stock.",
    "distributor": "Shipments to these distributors; on stock views, these distributors' stock.",
    "segment": "Shipments with a line of this tire segment; stock and lines of its SKUs.",
    "sku": "Shipments with a line of these SKUs; stock and lines of these SKUs.",
}
# The sidebar stays short: the less used filters fold away in a group, open when one is set.
FILTER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("region",)),
    ("Sites", ("plant", "distributor")),
    ("", ("carrier", "mode")),
    ("Tires", ("segment", "sku")),
    ("", ("status",)),
)


def visible_pages(role: str | None) -> list[st.Page]:
    """The pages `role` may see (auth.PAGES); every page for None (the open demo)."""
    return [
        st.Page(p.path, title=p.title, icon=p.icon, default=p.default) for p in auth.pages_for(role)
    ]


def login_pages() -> list[st.Page]:
    """Before sign-in, every page's URL shows only the login form (hidden navigation, no data).
    A page is identified by its URL path, so after login the same URL opens the real page when
    the role has it, and Streamlit's "page not found" otherwise."""
    return [
        st.Page(
            auth.login_page,
            title="Log in",
            icon="🔑",
            url_path=Path(p.path).stem,
            default=p.default,
        )
        for p in auth.PAGES
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
        if _widget_key(name) not in st.session_state:
            st.session_state[_widget_key(name)] = list(getattr(from_url, name))
    for title, names in FILTER_GROUPS:
        in_use = any(st.session_state[_widget_key(n)] for n in names)
        container = st.sidebar.expander(title, expanded=in_use) if title else st.sidebar
        for name in names:
            chosen[name] = clean(
                container.multiselect(
                    FILTER_LABELS[name],
                    options.allowed(name),
                    key=_widget_key(name),
                    format_func=functools.partial(options.label, name),
                    placeholder="All",
                    help=FILTER_HELP.get(name),
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


def sidebar_footer(identity: auth.Identity | None) -> None:
    st.sidebar.divider()
    if identity is None:
        st.sidebar.caption("🔓 Open demo: no users are configured, so every page is open to all.")
    else:
        auth.sidebar_account(identity)
    st.sidebar.caption(f"Database: {escape_markdown(str(queries.database_path()))}")
    st.sidebar.caption("All times in UTC.")


st.set_page_config(page_title="Tiretrack", page_icon="🛞", layout="wide")
try:
    access = auth.settings()
except ValueError as e:
    st.error(
        f"**The dashboard is closed: its access settings are invalid.** {escape_markdown(str(e))}"
        " (in .streamlit/secrets.toml)",
        icon="🔒",
    )
    st.stop()
identity = auth.current_identity(access)
if access.configured and (identity is None or identity.role is None):
    # Nobody signed in (or no role): the login form is all there is, and no data is read.
    st.navigation(login_pages(), position="hidden").run()
else:
    role = identity.role if identity else None
    navigation = st.navigation(visible_pages(role))
    st.session_state[components.NAV_PAGES_KEY] = tuple(p.path for p in auth.pages_for(role))
    st.session_state[components.FILTERS_KEY] = sidebar_filters(queries.options())
    sidebar_footer(identity)
    if components.check_worker():
        navigation.run()
