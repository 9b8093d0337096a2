"""Login, roles and the Export page in a real browser (Debian Chromium through Playwright), with
the database served by a worker process over Quack, as in production: users added with
`dashboard.users.add_user`, a planner cannot reach pages outside the role even by URL, the
downloaded CSV equals what `tiretrack export` writes for the same as-of, and the Quack token
never reaches the browser. Render and download times are measured and printed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, WebSocket

from dashboard.auth import PAGES
from dashboard.users import add_user
from ingest.broker import free_port
from ingest.serve import endpoint_path, token_path
from tests.browser.dashboard_db import TOLERANCE_MINUTES, DashboardDb, build_dashboard_db
from tests.browser.harness import chromium, new_page, served_dashboard, stop

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = {"pat": "planner", "ana": "analyst", "root": "admin"}
PASSWORDS = {name: f"{name}-browser-pass" for name in ACCOUNTS}
TIMEOUT_MS = 30_000
# A stand-in for `tiretrack ingest`: holds the database read-write and serves it over Quack,
# so the dashboard and `tiretrack export` must read through the worker, token and all.
SERVE = """
import signal, sys, time
from pathlib import Path
from ingest.config import ServeSettings
from ingest.serve import start_serving, stop_serving
from ingest.store import Store

path, port, tolerance = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
store = Store(path, on_time_tolerance_minutes=tolerance)
endpoint = start_serving(store.con, path, ServeSettings(host="127.0.0.1", port=port))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("serving", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    stop_serving(store.con, path, endpoint)
    store.close()
"""


@dataclass(frozen=True)
class Served:
    db: DashboardDb
    token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = build_dashboard_db(tmp_path_factory.mktemp("served") / "network.duckdb")
    log = db.path.with_suffix(".serve.log")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(db.path), str(free_port()), str(TOLERANCE_MINUTES)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text() or not endpoint_path(db.path).exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Served(db, token_path(db.path).read_text(encoding="utf-8").strip())
    finally:
        stop(process)


@pytest.fixture(scope="module")
def dashboard_url(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run` as `tiretrack dashboard` does, with a secrets file of three users."""
    home = tmp_path_factory.mktemp("dashboard")
    secrets = home / "secrets.toml"
    for name, role in ACCOUNTS.items():
        add_user(secrets, name, role, PASSWORDS[name])
    with served_dashboard(served.db.path, home, "--secrets.files", str(secrets)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), accept_downloads=True) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    with new_page(browser, TIMEOUT_MS) as opened:
        yield opened


def heading(page: Page, text: str) -> Locator:
    return page.locator("h1").filter(has_text=text)


def log_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def nav_titles(page: Page) -> set[str]:
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    links.first.wait_for()
    return {text.strip().splitlines()[-1] for text in links.all_inner_texts()}  # after the icon


def titles_of(role: str) -> set[str]:
    return {p.title for p in PAGES if role in p.roles}


def page_not_found(page: Page) -> None:
    """Streamlit's answer to a URL that is no page of this session; closed to go on."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    dialog.wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def test_planner_logs_in_and_cannot_reach_other_pages(page: Page, dashboard_url: str) -> None:
    # A deep link: the login form first, then the page itself (a page is known by its URL).
    start = time.monotonic()
    page.goto(f"{dashboard_url}/delays")
    page.get_by_label("User name").wait_for()
    form_at = time.monotonic() - start
    assert page.get_by_test_id("stSidebarNav").count() == 0, "no navigation before login"
    log_in(page, "pat", "not-the-password")
    page.get_by_text("Wrong user name or password.").wait_for()
    assert heading(page, "Delays & exceptions").count() == 0
    start = time.monotonic()
    log_in(page, "pat", PASSWORDS["pat"])
    heading(page, "Delays & exceptions").wait_for()
    times = [f"login form {form_at:.2f} s", f"login to /delays {time.monotonic() - start:.2f} s"]
    assert nav_titles(page) == titles_of("planner")
    assert page.get_by_text("Signed in as").count() == 1
    # A forbidden page by its URL never renders: before login every URL shows the login form
    # (an unknown one after Streamlit's "page not found"); after it, the planner's session has
    # no such page, so Streamlit runs the default page (the live map) at "/" instead.
    known = {Path(p.path).stem for p in PAGES}
    for path, title in (("export", "Export"), ("kpis", "KPIs")):
        start = time.monotonic()
        page.goto(f"{dashboard_url}/{path}")
        page.get_by_label("User name").wait_for()
        if path not in known:
            page_not_found(page)
        assert heading(page, title).count() == 0
        log_in(page, "pat", PASSWORDS["pat"])
        heading(page, "Live map").wait_for()
        page.wait_for_url(f"{dashboard_url}/")  # the default page's URL, not /{path}
        times.append(f"/{path} as planner {time.monotonic() - start:.2f} s")
        assert heading(page, title).count() == 0
        assert page.get_by_role("button", name="Prepare export").count() == 0
        assert nav_titles(page) == titles_of("planner")
    print("\nplanner: " + ", ".join(times))


def test_analyst_download_matches_tiretrack_export_and_the_token_stays_home(
    page: Page, dashboard_url: str, served: Served, tmp_path: Path
) -> None:
    received: list[bytes] = []  # every websocket frame the browser gets from the dashboard

    def record(socket: WebSocket) -> None:
        socket.on(
            "framereceived",
            lambda payload: received.append(
                payload if isinstance(payload, bytes) else payload.encode()
            ),
        )

    page.on("websocket", record)
    token = served.token
    page.goto(dashboard_url)
    page.get_by_label("User name").wait_for()
    log_in(page, "ana", PASSWORDS["ana"])
    heading(page, "Live map").wait_for()
    assert nav_titles(page) == titles_of("analyst")
    rendered = {}
    for spec in PAGES:
        start = time.monotonic()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=spec.title).click()
        heading(page, spec.title).wait_for()
        if spec.title == "Export":
            page.get_by_role("button", name="Prepare export").wait_for()
        else:  # the page's own content, after its title
            content = page.get_by_test_id("stMetric").or_(page.get_by_test_id("stDataFrame"))
            content.first.wait_for()
        rendered[spec.title] = time.monotonic() - start
        assert token not in page.content(), f"the token is in the HTML of {spec.title}"

    start = time.monotonic()
    page.get_by_role("button", name="Prepare export").click()
    file_button = page.get_by_role("button", name="CSV file")
    file_button.wait_for()
    prepared_at = time.monotonic() - start
    start = time.monotonic()
    with page.expect_download() as download:
        file_button.click()
    csv_path = tmp_path / download.value.suggested_filename
    download.value.save_as(csv_path)
    download_at = time.monotonic() - start
    with page.expect_download() as download:
        page.get_by_role("button", name="Manifest (JSON)").click()
    manifest = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert download.value.suggested_filename == csv_path.name + ".manifest.json"
    assert manifest["source"].startswith("quack:"), "read through the worker"

    start = time.monotonic()
    cli_out = tmp_path / "cli.csv"
    subprocess.run(
        [
            sys.executable, "-m", "ingest", "export", "shipments",
            "--db", str(served.db.path), "--as-of", manifest["as_of"],
            "--on-time-tolerance", str(TOLERANCE_MINUTES), "--format", "csv",
            "--out", str(cli_out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )  # fmt: skip
    cli_at = time.monotonic() - start
    data = csv_path.read_bytes()
    assert data == cli_out.read_bytes(), "the download is what `tiretrack export` writes"
    cli_manifest = json.loads(Path(f"{cli_out}.manifest.json").read_text(encoding="utf-8"))
    for key in ("as_of", "offsets", "rows", "query", "filters"):
        assert manifest[key] == cli_manifest[key], key
    assert manifest["rows"] == data.count(b"\n") - 1 > 0

    # How to attach from DuckDB: the token file's path is shown, never the token; and the
    # token is nowhere in what the server sent, HTML or websocket.
    attach = page.locator("code").filter(has_text="ATTACH")
    assert str(token_path(served.db.path)) in attach.inner_text()
    assert token not in page.content()
    frames = b"".join(received)
    assert str(token_path(served.db.path)).encode() in frames, "the frames were recorded"
    assert token.encode() not in frames, "the token went over the websocket"
    print(
        "\nanalyst page render times: "
        + ", ".join(f"{title} {seconds:.2f} s" for title, seconds in rendered.items())
        + f"\nCSV of {manifest['rows']} rows prepared in {prepared_at:.2f} s, downloaded in "
        f"{download_at:.2f} s ({len(data):,} bytes); `tiretrack export` took {cli_at:.2f} s; "
        f"{len(frames):,} websocket bytes checked for the token"
    )
