"""The dashboard in a real browser: `streamlit run` on a loopback port, Debian Chromium through
Playwright. The map's canvas must really draw (basemap, lanes, trucks in the status colours),
the health page must show the database's accepted count, the live refresh must keep the user's
zoom, and the replay slider must change what the map shows. Page render times are measured and
printed."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page

from dashboard import theme
from tests import oracle
from tests.browser.dashboard_db import DashboardDb, build_dashboard_db
from tests.browser.harness import chromium, new_page, served_dashboard

pytestmark = pytest.mark.browser

MAP = ".stDeckGlJsonChart"


@pytest.fixture(scope="module")
def network_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(tmp_path_factory.mktemp("browser") / "network.duckdb")


@pytest.fixture(scope="module")
def dashboard_url(
    network_db: DashboardDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with served_dashboard(network_db.path, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    with new_page(browser) as opened:
        yield opened


def colour_shares(png: bytes) -> dict[str, float]:
    """Share of the map's pixels that are sea, land, blank, or each status colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)

    def near(rgb: tuple[int, int, int], tolerance: int) -> np.ndarray:
        return np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=1)

    shares = {
        "sea": near(theme.SEA_RGB, 6),
        "land": near(theme.LAND_RGB, 3),
        "blank": near((255, 255, 255), 2),
    }
    for key, status in theme.STATUS_BY_KEY.items():
        shares[key] = near(status.rgb, 24)
    return {key: float(mask.mean()) for key, mask in shares.items()}


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `check()` holds; fails after timeout_s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def test_map_canvas_draws_the_network(page: Page, dashboard_url: str) -> None:
    start = time.monotonic()
    page.goto(dashboard_url)
    page.locator(f"{MAP} canvas").wait_for(timeout=30_000)
    canvas_at = time.monotonic() - start
    shares: dict[str, float] = {}

    def drawn() -> bool:
        shares.update(colour_shares(page.locator(MAP).screenshot()))
        trucks = shares["on_time"] + shares["at_risk"] + shares["late"] + shares["exception"]
        return shares["sea"] > 0.15 and shares["land"] > 0.15 and trucks > 0.0005

    wait_until(drawn, 30, "the map drawing sea, land and trucks")
    elapsed = time.monotonic() - start
    print(
        f"\nlive map page: map canvas after {canvas_at:.2f} s, basemap and trucks drawn after "
        f"{elapsed:.2f} s; pixel shares { ({k: round(v, 4) for k, v in shares.items()}) }"
    )
    assert shares["blank"] < 0.05, "no part of the map is left blank"
    assert page.get_by_text("Worker unreachable").count() == 0


def test_health_page_shows_the_accepted_count(
    page: Page, dashboard_url: str, network_db: DashboardDb
) -> None:
    start = time.monotonic()
    page.goto(f"{dashboard_url}/pipeline_health")
    accepted = page.get_by_test_id("stMetric").filter(has_text="Accepted")
    value = accepted.get_by_test_id("stMetricValue")
    value.wait_for(timeout=30_000)
    elapsed = time.monotonic() - start
    print(f"\npipeline health page rendered in {elapsed:.2f} s")
    assert value.inner_text().strip() == f"{network_db.accepted:,}"
    assert page.get_by_text("Stale since").count() >= 1, "no worker: the banner says stale"


def test_live_refresh_keeps_the_users_zoom(page: Page, dashboard_url: str) -> None:
    page.goto(dashboard_url)
    chart = page.locator(MAP)
    chart.locator("canvas").wait_for(timeout=30_000)
    wait_until(lambda: colour_shares(chart.screenshot())["land"] > 0.15, 30, "the basemap")
    before = colour_shares(chart.screenshot())
    box = chart.bounding_box()
    assert box is not None
    # Zoom in over the Atlantic south-west of Ireland: the view fills with sea.
    page.mouse.move(box["x"] + box["width"] * 0.12, box["y"] + box["height"] * 0.62)
    for _ in range(6):
        page.mouse.wheel(0, -400)
        time.sleep(0.15)
    time.sleep(1.0)
    zoomed = colour_shares(chart.screenshot())
    assert zoomed["sea"] > before["sea"] + 0.1, (before, zoomed)
    time.sleep(3 * 2 + 1)  # three refreshes of the live fragment
    after = colour_shares(chart.screenshot())
    assert abs(after["sea"] - zoomed["sea"]) < 0.05, (zoomed, after)


def minute(instant: dt.datetime) -> dt.datetime:
    return instant.replace(second=0, microsecond=0)


def test_replay_slider_changes_what_the_map_shows(
    page: Page, dashboard_url: str, network_db: DashboardDb
) -> None:
    """Replay, then drag the slider to its end with the keyboard: the truck count follows the
    database as of each minute, and the canvas draws the trucks of that moment."""
    times = [oracle.parse_instant(e["occurred_at"]) for e in network_db.events]
    first, last = minute(min(times)), minute(min(max(times), dt.datetime.now(dt.UTC)))
    start_at = max(first, last - dt.timedelta(minutes=30))  # where the page puts the slider
    expected_start, expected_end = len(network_db.trucks(start_at)), len(network_db.trucks(last))
    assert expected_start < expected_end, "the scenario's network fills up over time"

    page.goto(dashboard_url)
    chart = page.locator(MAP)
    chart.locator("canvas").wait_for(timeout=30_000)
    trucks = (
        page.get_by_test_id("stMetric")
        .filter(has_text="Trucks on the road")
        .get_by_test_id("stMetricValue")
    )
    start = time.monotonic()
    page.get_by_role("radio", name="Replay").click()  # a segmented control
    slider = page.get_by_role("slider")
    slider.wait_for(timeout=30_000)
    wait_until(
        lambda: trucks.inner_text().strip() == f"{expected_start:,}", 30, "the replay's start"
    )
    print(f"\nreplay view rendered in {time.monotonic() - start:.2f} s")

    def truck_pixels() -> float:
        shares = colour_shares(chart.screenshot())
        return sum(shares[key] for key in ("on_time", "at_risk", "late", "exception"))

    wait_until(lambda: colour_shares(chart.screenshot())["land"] > 0.15, 30, "the basemap")
    before = truck_pixels()
    slider.focus()
    page.keyboard.press("End")
    wait_until(lambda: trucks.inner_text().strip() == f"{expected_end:,}", 30, "the replay's end")
    wait_until(lambda: truck_pixels() > before + 0.0005, 30, "more trucks drawn on the canvas")
    assert page.get_by_text("Worker unreachable").count() == 0
