"""The KPI page in a real browser: `streamlit run dashboard/app.py` on a loopback port, Debian
Chromium through Playwright. The on-time rate and OTIF shown equal the database's (the page's
SQL run on the file) and the oracle's for the instant the page says it measured at. The page's
render time is measured and printed."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import BrowserContext, Page

from dashboard import flows, kpi_queries
from dashboard.filters import Filters
from ingest.database import configure
from tests import oracle
from tests.browser.dashboard_db import TOLERANCE_MINUTES, DashboardDb, build_dashboard_db
from tests.browser.harness import chromium, new_page, served_dashboard

pytestmark = pytest.mark.browser

PERIOD = kpi_queries.PERIOD_BY_KEY["5m"]
MEASURED = re.compile(r"up to (\d{2} \w{3} \d{2}:\d{2}:\d{2}) UTC")


@pytest.fixture(scope="module")
def network_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(tmp_path_factory.mktemp("kpi-browser") / "network.duckdb")


@pytest.fixture(scope="module")
def dashboard_url(
    network_db: DashboardDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with served_dashboard(network_db.path, tmp_path_factory.mktemp("kpi-streamlit")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("kpi-chromium-profile")
    with chromium(profile, viewport={"width": 1440, "height": 900}) as context:  # a laptop
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    with new_page(browser) as opened:
        yield opened


def measured_at(caption: str, year: int) -> dt.datetime:
    """T from the page's caption ('... up to 26 Nov 10:38:53 UTC ...'): whole seconds."""
    match = MEASURED.search(caption)
    assert match, caption
    return dt.datetime.strptime(f"{year} {match.group(1)}", "%Y %d %b %H:%M:%S").replace(
        tzinfo=dt.UTC
    )


def database_rates(path: Path, as_of: dt.datetime) -> tuple[float, float]:
    """The current period's on-time rate and OTIF, by the page's SQL run on the file."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        configure(con)
        sql = kpi_queries.period_kpis_sql(Filters(), PERIOD, as_of)
        frame = con.execute(sql).to_arrow_table().to_pandas().set_index("period")
    finally:
        con.close()
    return frame.loc["current", "on_time_rate"], frame.loc["current", "otif_rate"]


def test_kpi_page_shows_the_databases_on_time_rate(
    page: Page, dashboard_url: str, network_db: DashboardDb
) -> None:
    url = f"{dashboard_url}/kpis?period=Last+{PERIOD.label.replace(' ', '+')}"
    tiles = page.get_by_test_id("stMetric")
    on_time = tiles.filter(has_text="On-time rate").get_by_test_id("stMetricValue")
    for visit in ("first visit (server cold)", "second visit"):
        start = time.monotonic()
        page.goto(url)
        on_time.wait_for(timeout=30_000)
        tiles_at = time.monotonic() - start
        page.locator(".stPlotlyChart .main-svg").nth(1).wait_for(timeout=30_000)
        charts_at = time.monotonic() - start
        print(
            f"\nKPI page, {visit}: tiles rendered in {tiles_at:.2f} s, "
            f"both charts drawn in {charts_at:.2f} s"
        )

    caption = page.get_by_text("Shipments due in the last").first.inner_text()
    assert f"last {PERIOD.label} up to" in caption, "the period came from the URL"
    as_of = measured_at(caption, network_db.built_at.year)
    rate, otif = database_rates(network_db.path, as_of)
    start_at = as_of - PERIOD.length
    assert rate == pytest.approx(
        oracle.on_time_rate(network_db.events, as_of, TOLERANCE_MINUTES, start_at, as_of)
    )
    assert otif == pytest.approx(
        oracle.otif(network_db.events, as_of, TOLERANCE_MINUTES, start_at, as_of)
    )
    assert on_time.inner_text().strip() == flows.rate_text(rate)
    shown_otif = tiles.filter(has_text="OTIF").get_by_test_id("stMetricValue").inner_text()
    assert shown_otif.strip() == flows.rate_text(otif)
    assert page.get_by_text("Worker unreachable").count() == 0
