"""Alerts end to end in a real browser: the real broker, the real worker (`tiretrack ingest` on
this test's topics) and the dashboard as `tiretrack dashboard` serves it, in Debian Chromium. A
critical shipment exception opens an alert; a planner acknowledges it in one session; another
session sees who acknowledged it without reloading (its live fragment), the panel counts it,
the acknowledgement is on the acks topic and the worker announced it on the alerts topic.
Times from click to visible are measured and printed."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from playwright.sync_api import BrowserContext, Locator, Page

from dashboard.users import add_user
from ingest.broker import LocalBroker, free_port
from ingest.readers import open_reader
from tests.browser.harness import chromium, new_page, served_dashboard, stop
from tests.conftest import REPO, Topics, produce

pytestmark = pytest.mark.browser

ACCOUNTS = {"pat": "planner", "ana": "analyst"}
PASSWORDS = {name: f"{name}-browser-pass" for name in ACCOUNTS}
TIMEOUT_MS = 30_000
SHIPMENT = "SHP-ALERT-BROWSER"
MESSAGE = "Tyre blow-out on the A7 near Valence"


@dataclass(frozen=True)
class Running:
    db: Path
    alerts_topic: str
    acks_topic: str
    bootstrap: str


def exception_scenario(now: dt.datetime) -> list[tuple[str, str, bytes]]:
    """A shipment on the road that reports a critical exception now (rule critical_exception)."""

    def event(kind: str, minutes_ago: float, **fields: Any) -> tuple[str, str, bytes]:
        body = {
            "event_id": f"{SHIPMENT}-{kind}",
            "event_type": f"shipment.{kind}",
            "schema_version": 1,
            "occurred_at": (now - dt.timedelta(minutes=minutes_ago)).isoformat(),
            "source": "CAR-GAL",
            "shipment_id": SHIPMENT,
            **fields,
        }
        return ("shipments", SHIPMENT, json.dumps(body).encode())

    return [
        event(
            "created", 60,
            origin_site_id="PLT-FR-CFE", destination_site_id="DC-FR-LYS", carrier_id="CAR-GAL",
            mode="road", planned_departure=(now - dt.timedelta(minutes=40)).isoformat(),
            planned_arrival=(now + dt.timedelta(hours=3)).isoformat(),
            lines=[{"sku": "P-1756514-82T-S", "quantity": 120}],
        ),
        event("departed", 40, lat=45.77, lon=3.09),
        event("position", 5, lat=45.2, lon=4.6, speed_kmh=0),
        event(
            "exception", 1, code="BREAKDOWN", severity="critical", message=MESSAGE,
            estimated_delay_minutes=90,
        ),
    ]  # fmt: skip


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    reader = open_reader(db)  # the worker holds the file: over Quack
    try:
        return reader.query(sql).to_pylist()
    finally:
        reader.close()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    tail = "" if log is None else "\n" + log.read_text()[-3000:]
    raise AssertionError(f"{what} did not happen within {timeout_s} s{tail}")


def read_topic(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "t-alerts", "enable.partition.eof": True}
    )
    try:
        meta = consumer.list_topics(topic, timeout=5).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        got, ends = [], 0
        while ends < len(meta.partitions):
            msg = consumer.poll(5)
            assert msg is not None, f"timed out reading {topic}"
            if msg.error():
                ends += 1
                continue
            got.append((msg.key().decode(), json.loads(msg.value())))
        return got
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def running(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The worker on fresh topics, with the scenario produced and its alert opened."""
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"shipments-al-{tag}", f"inventory-al-{tag}")
    work = tmp_path_factory.mktemp("alerts-worker")
    db = work / "alerts.duckdb"
    alerts_topic, acks_topic = f"alerts-{tag}", f"alert-acks-{tag}"
    produce(topics.settings(broker), exception_scenario(dt.datetime.now(dt.UTC)))
    log = work / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "ingest", "ingest", *topics.cli_args(broker),
                "--alerts-topic", alerts_topic, "--alert-acks-topic", acks_topic,
                "--db", str(db), "--serve-port", str(free_port()), "--progress-interval", "1",
            ],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        start = time.monotonic()
        wait_for(
            lambda: (
                worker.poll() is None
                and db.with_name(db.name + ".serve.json").exists()
                and query(db, "SELECT alert_id FROM alerts WHERE state = 'open'")
            ),
            60,
            "the worker opening the alert",
            log,
        )
        print(f"\nworker up and alert opened after {time.monotonic() - start:.2f} s")
        yield Running(db, alerts_topic, acks_topic, broker.bootstrap_servers)
    finally:
        stop(worker)


@pytest.fixture(scope="module")
def dashboard_url(running: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tiretrack dashboard`'s command, with the Kafka settings in its environment as
    `tiretrack dashboard` and the demo pass them (ingest.processes.child_env)."""
    home = tmp_path_factory.mktemp("alerts-dashboard")
    secrets = home / "secrets.toml"
    for name, role in ACCOUNTS.items():
        add_user(secrets, name, role, PASSWORDS[name])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", running.bootstrap)
        env.setenv("TIRETRACK_ALERT_ACKS_TOPIC", running.acks_topic)
        with served_dashboard(running.db, home, "--secrets.files", str(secrets)) as url:
            yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("alerts-profile")) as context:
        yield context


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.locator("h1").filter(has_text="Live map").wait_for()


def metric(page: Page, label: str) -> Locator:
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def grid_cells(page: Page) -> list[str]:
    """The open-alerts table's cells (Streamlit's grid keeps them in an accessible table)."""
    table = page.get_by_test_id("stDataFrame").first
    return [c.strip() for c in table.locator("td").all_inner_texts()]


def panel(page: Page) -> Locator:
    return page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"\d+ open alerts?"))


def test_an_acknowledgement_reaches_every_session_through_kafka(
    browser: BrowserContext, dashboard_url: str, running: Running
) -> None:
    (alert,) = query(
        running.db, "SELECT alert_id, rule, severity, message FROM alerts WHERE state = 'open'"
    )
    assert alert["rule"] == "critical_exception" and alert["severity"] == "critical"
    assert SHIPMENT in alert["message"] and MESSAGE in alert["message"], alert["message"]
    with new_page(browser, TIMEOUT_MS) as planner, new_page(browser, TIMEOUT_MS) as analyst:
        # Session 2: an analyst watching the alerts page.
        log_in(analyst, dashboard_url, "ana")
        analyst.get_by_test_id("stSidebarNav").get_by_role("link", name="Alerts").click()
        analyst.locator("h1").filter(has_text="Alerts").wait_for()
        wait_for(lambda: metric(analyst, "Not acknowledged").inner_text() == "1", 30, "1 open")
        assert "pat" not in grid_cells(analyst)
        assert analyst.get_by_role("button", name="Acknowledge").is_disabled()

        # Session 1: a planner sees the panel on the live map and follows it to the page.
        log_in(planner, dashboard_url, "pat")
        wait_for(lambda: panel(planner).count() == 1, 30, "the alerts panel")
        text = panel(planner).inner_text()
        assert "1 open alert " in text and "1 critical" in text and "1 not acknowledged" in text
        planner.get_by_role("link", name="Alerts page").click()
        planner.locator("h1").filter(has_text="Alerts").wait_for()
        box = planner.get_by_test_id("stMultiSelect").filter(has_text="Alerts to acknowledge")
        box.click()
        option = planner.get_by_role("option").filter(has_text="CRITICAL · Critical exception")
        option.click()
        planner.keyboard.press("Escape")
        planner.get_by_label("Note (optional)").fill("driver safe, towing ordered")
        clicked_at = time.monotonic()
        planner.get_by_role("button", name="Acknowledge").click()
        # The page confirms the send; a worker quick enough may store the ack before the page
        # draws again, and then the table shows it instead of the note.
        wait_for(
            lambda: (
                planner.get_by_text("it appears when the worker has stored it").count() > 0
                or "pat" in grid_cells(planner)
            ),
            30,
            "the page confirming the acknowledgement",
        )
        sent_after = time.monotonic() - clicked_at

        # Session 2 shows who acknowledged, without a reload: its live fragment refreshes.
        wait_for(lambda: "pat" in grid_cells(analyst), 30, "pat in the analyst's table")
        seen_after = time.monotonic() - clicked_at
        # (each read is cached for 2 s on its own: the counts may follow a refresh later)
        wait_for(lambda: metric(analyst, "Not acknowledged").inner_text() == "0", 10, "0 left")
        assert metric(analyst, "Open alerts").inner_text() == "1"
        wait_for(lambda: "pat" in grid_cells(planner), 30, "pat in the planner's table")
        wait_for(
            lambda: planner.get_by_text("acknowledgement(s) sent").count() == 0,
            10,
            "the pending note going away",
        )
        # The panel, on another page of the analyst's session (navigation, not a reload).
        analyst.get_by_test_id("stSidebarNav").get_by_role("link", name="Live map").click()
        wait_for(lambda: panel(analyst).count() == 1, 30, "the analyst's alerts panel")
        text = panel(analyst).inner_text()
        assert "1 open alert " in text and "1 critical" in text and "0 not acknowledged" in text

    # The acknowledgement travelled through Kafka, and the store and the alerts topic agree.
    acks = read_topic(running.bootstrap, running.acks_topic)
    assert [key for key, _ in acks] == [alert["alert_id"]]
    ack = acks[0][1]
    assert ack["acked_by"] == "pat" and ack["note"] == "driver safe, towing ordered"
    (stored,) = query(
        running.db,
        "SELECT acked_by, acked_at, ack_note, revision FROM alerts WHERE alert_id = "
        f"'{alert['alert_id']}'",
    )
    assert stored["acked_by"] == "pat" and stored["ack_note"] == ack["note"]
    assert stored["acked_at"] == dt.datetime.fromisoformat(ack["acked_at"])
    announced = [
        value["event_type"]
        for key, value in read_topic(running.bootstrap, running.alerts_topic)
        if key == alert["alert_id"]
    ]
    assert announced[0] == "alert.opened" and "alert.acknowledged" in announced
    print(
        f"\nacknowledgement sent (page confirmed) {sent_after:.2f} s after the click; shown in "
        f"the other session {seen_after:.2f} s after the click"
    )
