"""Alerts end to end: the real worker process on the real local broker raises each rule's alert
once, updates it and resolves it, on the alerts topic, in the table and at a webhook; a stale
tracker fires with no events arriving; a dead webhook does not stop ingest; acknowledgements
from the acks topic are applied once, and bad ones are dead-lettered."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ingest import alerts
from ingest.alert_acks import publish_ack
from ingest.alerts import AlertEngine, parse_rules
from ingest.broker import LocalBroker, free_port
from ingest.config import KafkaSettings
from ingest.kafka import EventProducer, ensure_topics
from ingest.readers import open_reader
from ingest.serve import endpoint_path
from ingest.store import Store
from tests.browser.dashboard_db import store_events
from tests.conftest import REPO

pytestmark = pytest.mark.integration

# Small thresholds and a fast engine, so each scenario takes seconds (tolerance: 1 minute).
RULES = """
[engine]
eval_interval_s = 0.5
min_interval_s = 0.2
slow_interval_s = 0.5

[webhook]
retries = 3
backoff_s = 0.2

[late]
open_after_s = 1.0
resolve_after_s = 1.0
update_min_change = 10.0
critical_delay_minutes = 600.0

[at_risk]
open_after_s = 1.0
resolve_after_s = 1.0
update_min_change = 10.0

[critical_exception]
resolve_after_s = 0.5

[stale_tracker]
stale_after_minutes = 0.1
update_min_change = 0.05
resolve_after_s = 0.5

[low_days_of_supply]
min_history_hours = 1.0
open_after_s = 1.0
resolve_after_s = 1.0

[dead_letter_rate]
threshold = 0.2
window_s = 15.0
min_messages = 20
open_after_s = 0.0
resolve_after_s = 1.0
"""
WAIT_S = 45.0
DISTRIBUTOR = "DIS-DE-HAM-01"
PLANT = "PLT-DE-HAN"
_tags = itertools.count()


# --- events relative to now ---------------------------------------------------------------


def stamp(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ago(minutes: float = 0.0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)


def event(event_type: str, when: dt.datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"EV-{uuid.uuid4()}",
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": stamp(when),
        "source": "alert-test",
        **fields,
    }


def created(
    shipment: str, arrival: dt.datetime, *, destination: str = "DC-FR-LYS", sku: str = "P-1"
) -> dict[str, Any]:
    return event(
        "shipment.created",
        ago(120),
        shipment_id=shipment,
        origin_site_id=PLANT,
        destination_site_id=destination,
        carrier_id="CAR-NWS",
        mode="road",
        planned_departure=stamp(ago(100)),
        planned_arrival=stamp(arrival),
        lines=[{"sku": sku, "quantity": 1000}],
    )


def departed(shipment: str) -> dict[str, Any]:
    return event("shipment.departed", ago(90), shipment_id=shipment)


# --- the rig: topics, worker, alerts consumer, webhook receiver -------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook on loopback: answers the first POST 503 (to be retried), then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.attempts += 1
            first = self.server.attempts == 1
            if not first:
                self.server.bodies.append(json.loads(body))
        self.send_response(503 if first else 200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


class AlertFeed:
    """Reads the alerts topic from its start in a thread."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.events: list[dict[str, Any]] = []
        self.keys: list[bytes | None] = []
        self._stop = threading.Event()
        self._consumer = Consumer(kafka.consumer_config(f"alert-test-{uuid.uuid4().hex[:6]}"))
        self._consumer.assign(
            [TopicPartition(kafka.alerts_topic, p, OFFSET_BEGINNING) for p in range(4)]
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(100, 0.2):
                err = msg.error()
                if err is None:
                    self.keys.append(msg.key())
                    self.events.append(json.loads(msg.value() or b"{}"))
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(err.str())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def of(self, rule: str, subject: str) -> list[dict[str, Any]]:
        return [
            e for e in list(self.events)
            if e["alert"]["rule"] == rule and e["alert"]["subject_id"] == subject
        ]  # fmt: skip

    def wait(
        self,
        rule: str,
        subject: str,
        event_type: str,
        check: Callable[[dict[str, Any]], bool] = lambda _alert: True,
    ) -> dict[str, Any]:
        """The first event of that type for the rule and subject whose alert passes `check`."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for e in self.of(rule, subject):
                if e["event_type"] == event_type and check(e["alert"]):
                    return e
            time.sleep(0.1)
        raise AssertionError(
            f"no {event_type} for {rule} {subject}; saw "
            f"{[(e['event_type'], e['alert']['message']) for e in self.of(rule, subject)]}"
        )


@dataclass
class Rig:
    kafka: KafkaSettings
    db: Path
    worker: subprocess.Popen[str]
    feed: AlertFeed
    receiver: Receiver | None
    stderr: list[str] = field(default_factory=list)

    def produce(self, *events: dict[str, Any], family: str = "shipments") -> None:
        producer = EventProducer(self.kafka)
        for e in events:
            key = e.get("shipment_id") or e.get("site_id")
            producer.send(self.kafka.topic_for(family), key, json.dumps(e).encode())
        producer.flush()

    def produce_raw(self, topic: str, values: list[bytes]) -> None:
        producer = EventProducer(self.kafka)
        for value in values:
            producer.send(topic, b"k", value)
        producer.flush()

    def query(self, sql: str) -> list[dict[str, Any]]:
        reader = open_reader(self.db)
        try:
            return reader.query(sql).to_pylist()
        finally:
            reader.close()

    def alert_row(self, alert_id: str) -> dict[str, Any]:
        rows = self.query(f"SELECT * FROM alerts WHERE alert_id = '{uuid.UUID(alert_id)}'")
        assert len(rows) == 1
        return rows[0]

    def wait_rows(self, sql: str, check: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
        deadline = time.monotonic() + WAIT_S
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.query(sql)
            if check(rows):
                return rows
            time.sleep(0.2)
        raise AssertionError(f"{sql}: {rows}")


def alert_kafka(broker: LocalBroker) -> KafkaSettings:
    tag = f"{next(_tags)}-{uuid.uuid4().hex[:6]}"
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        shipments_topic=f"shipments-{tag}",
        inventory_topic=f"inventory-{tag}",
        alerts_topic=f"alerts-{tag}",
        alert_acks_topic=f"alert-acks-{tag}",
    )
    ensure_topics(kafka, [*kafka.topics, kafka.alerts_topic, kafka.alert_acks_topic])
    return kafka


@contextlib.contextmanager
def running_worker(
    broker: LocalBroker, tmp_path: Path, webhook: str | None, kafka: KafkaSettings | None = None
) -> Iterator[Rig]:
    """`tiretrack ingest` with the test rules, serving its database; stopped with SIGTERM."""
    kafka = kafka or alert_kafka(broker)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    db = tmp_path / "alerts.duckdb"
    command = [
        sys.executable, "-m", "ingest", "ingest",
        "--bootstrap-servers", kafka.bootstrap_servers,
        "--shipments-topic", kafka.shipments_topic, "--inventory-topic", kafka.inventory_topic,
        "--alerts-topic", kafka.alerts_topic, "--alert-acks-topic", kafka.alert_acks_topic,
        "--alert-rules", str(rules), "--on-time-tolerance", "1", "--db", str(db),
        "--serve-port", str(free_port()), "--batch-timeout", "0.05",
        *(["--webhook-url", webhook, "--webhook-timeout-s", "1"] if webhook else []),
    ]  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out, text=True)
    feed = AlertFeed(kafka)
    rig = Rig(kafka, db, worker, feed, None)
    try:
        deadline = time.monotonic() + 60
        while not endpoint_path(db).exists():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never served its database"
            time.sleep(0.1)
        yield rig
    finally:
        feed.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    text = log.read_text()
    assert worker.returncode == 0, text[-3000:]
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def rig(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One worker for the rule scenarios (each with its own subjects), with a webhook."""
    receiver = Receiver()
    server = threading.Thread(target=receiver.serve_forever, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/alerts"
    try:
        with running_worker(broker, tmp_path_factory.mktemp("alerts"), url) as running:
            running.receiver = receiver
            yield running
    finally:
        receiver.shutdown()
        receiver.server_close()


def assert_one_alert(rig: Rig, rule: str, subject: str) -> str:
    """Exactly one alert for this condition: opened once, then updates, one resolve; the
    table and the alert history agree with the topic."""
    events = rig.feed.of(rule, subject)
    ids = {e["alert"]["alert_id"] for e in events}
    assert len(ids) == 1, events
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "alert.opened" and kinds.count("alert.opened") == 1, kinds
    assert kinds[-1] == "alert.resolved" and kinds.count("alert.resolved") == 1, kinds
    assert "alert.updated" in kinds, kinds
    assert [e["alert"]["revision"] for e in events] == list(range(1, len(events) + 1))
    alert_id = ids.pop()
    keys = {
        k
        for k, e in zip(list(rig.feed.keys), list(rig.feed.events), strict=False)
        if e["alert"]["alert_id"] == alert_id
    }
    assert keys == {alert_id.encode()}, "the topic's key is the alert id"
    row = rig.alert_row(alert_id)
    last = events[-1]["alert"]
    assert row["state"] == "resolved" and row["revision"] == last["revision"]
    assert row["message"] == last["message"] and row["value"] == last["value"]
    assert stamp(row["resolved_at"]) == last["resolved_at"]
    stored = rig.query(
        f"SELECT event_type FROM alert_history WHERE alert_id = '{uuid.UUID(alert_id)}'"
    )
    assert sorted(r["event_type"] for r in stored) == sorted(kinds)
    return alert_id


# --- one scenario per rule --------------------------------------------------------------------


def test_late_shipment_opens_updates_and_resolves(rig: Rig) -> None:
    shipment = f"SHP-LATE-{uuid.uuid4().hex[:6]}"
    rig.produce(created(shipment, arrival=ago(10)), departed(shipment))
    opened = rig.feed.wait("late", shipment, "alert.opened")["alert"]
    assert opened["severity"] == "warning" and opened["subject_type"] == "shipment"
    assert opened["value"] >= 10 and opened["threshold"] == 1.0
    assert opened["shipment_id"] == shipment and opened["destination_site_id"] == "DC-FR-LYS"
    assert f"{shipment} to " in opened["message"] and " late (ETA " in opened["message"]
    # The carrier now expects it 40 minutes after plan: a material change of the delay.
    eta = stamp(ago(-30))
    rig.produce(event("shipment.eta_updated", ago(0), shipment_id=shipment, eta=eta))
    updated = rig.feed.wait("late", shipment, "alert.updated")["alert"]
    assert updated["value"] >= 40 and updated["revision"] == 2
    lines = [{"sku": "P-1", "quantity": 1000}]
    rig.produce(event("shipment.delivered", ago(0), shipment_id=shipment, lines=lines))
    resolved = rig.feed.wait("late", shipment, "alert.resolved")["alert"]
    assert resolved["state"] == "resolved"
    assert_one_alert(rig, "late", shipment)


def test_at_risk_shipment_opens_updates_and_resolves(rig: Rig) -> None:
    shipment = f"SHP-RISK-{uuid.uuid4().hex[:6]}"
    eta = event("shipment.eta_updated", ago(1), shipment_id=shipment, eta=stamp(ago(-60)))
    rig.produce(created(shipment, arrival=ago(-30)), departed(shipment), eta)
    opened = rig.feed.wait("at_risk", shipment, "alert.opened")["alert"]
    assert opened["severity"] == "info" and 29 <= opened["value"] <= 31
    assert "is expected 30 min late" in opened["message"]
    later = stamp(ago(-90))
    rig.produce(event("shipment.eta_updated", ago(0.5), shipment_id=shipment, eta=later))
    assert 59 <= rig.feed.wait("at_risk", shipment, "alert.updated")["alert"]["value"] <= 61
    # Back on plan: the condition clears.
    rig.produce(event("shipment.eta_updated", ago(0), shipment_id=shipment, eta=stamp(ago(-30))))
    rig.feed.wait("at_risk", shipment, "alert.resolved")
    assert_one_alert(rig, "at_risk", shipment)
    assert rig.feed.of("late", shipment) == []


def test_critical_exception_opens_updates_and_resolves(rig: Rig) -> None:
    shipment = f"SHP-EXC-{uuid.uuid4().hex[:6]}"
    breakdown = event(
        "shipment.exception", ago(0.5), shipment_id=shipment, code="BREAKDOWN",
        severity="critical", message="tractor unit breakdown", estimated_delay_minutes=5,
    )  # fmt: skip
    rig.produce(created(shipment, arrival=ago(-600)), departed(shipment), breakdown)
    opened = rig.feed.wait("critical_exception", shipment, "alert.opened")["alert"]
    assert opened["severity"] == "critical" and opened["value"] == 5
    assert "critical BREAKDOWN: tractor unit breakdown" in opened["message"]
    strike = event(
        "shipment.exception", ago(0), shipment_id=shipment, code="STRIKE", severity="critical",
        message="strike at the terminal",
    )  # fmt: skip
    rig.produce(strike)
    updated = rig.feed.wait("critical_exception", shipment, "alert.updated")["alert"]
    assert "STRIKE" in updated["message"] and updated["value"] is None
    rig.produce(event("shipment.arrived", ago(0), shipment_id=shipment))
    rig.feed.wait("critical_exception", shipment, "alert.resolved")
    assert_one_alert(rig, "critical_exception", shipment)


def test_stale_tracker_fires_with_no_events_arriving(rig: Rig) -> None:
    shipment = f"SHP-STALE-{uuid.uuid4().hex[:6]}"
    ping = event("shipment.position", ago(0), shipment_id=shipment, lat=50.0, lon=8.0)
    rig.produce(created(shipment, arrival=ago(-600)), departed(shipment), ping)
    rig.wait_rows(
        f"SELECT 1 FROM shipments_now WHERE shipment_id = '{shipment}' "
        "AND last_position_at IS NOT NULL",
        lambda rows: len(rows) == 1,
    )
    before = rig.query("SELECT messages FROM ingest_stats")
    # Nothing is produced from here on: only the worker's timer can notice the silence.
    opened = rig.feed.wait("stale_tracker", shipment, "alert.opened")["alert"]
    assert opened["value"] > 0.1 and opened["threshold"] == 0.1
    assert "has sent no position for" in opened["message"]
    rig.feed.wait("stale_tracker", shipment, "alert.updated")
    assert rig.query("SELECT messages FROM ingest_stats") == before, "no event came in"
    # The tracker reports again, and the truck arrives (so it cannot go silent once more).
    rig.produce(
        event("shipment.position", ago(0), shipment_id=shipment, lat=50.1, lon=8.1),
        event("shipment.arrived", ago(0), shipment_id=shipment),
    )
    rig.feed.wait("stale_tracker", shipment, "alert.resolved")
    assert_one_alert(rig, "stale_tracker", shipment)


def test_low_days_of_supply_counts_in_transit_stock(rig: Rig) -> None:
    sku = f"T-ALERT-{uuid.uuid4().hex[:6]}"
    subject = f"{DISTRIBUTOR}/{sku}"

    def stock(event_type: str, minutes_ago: float, **fields: Any) -> dict[str, Any]:
        return event(event_type, ago(minutes_ago), site_id=DISTRIBUTOR, sku=sku, **fields)

    # Two days of history: 150 counted, 100 sold -> 50 on hand at 50 a day: 1 day of supply.
    rig.produce(
        stock("inventory.counted", 48 * 60, on_hand=150),
        stock("inventory.adjusted", 24 * 60, delta=-100, reason="sold"),
        family="inventory",
    )
    opened = rig.feed.wait("low_days_of_supply", subject, "alert.opened")["alert"]
    assert (opened["subject_type"], opened["site_id"], opened["sku"]) == (
        "site_sku",
        DISTRIBUTOR,
        sku,
    )
    assert opened["severity"] == "warning" and opened["value"] == pytest.approx(1.0, abs=0.01)
    assert opened["threshold"] == 2.0
    # 30 more sold: 20 left at 65 a day, under half a day: critical.
    rig.produce(stock("inventory.adjusted", 1, delta=-30, reason="sold"), family="inventory")
    updated = rig.feed.wait("low_days_of_supply", subject, "alert.updated")["alert"]
    assert updated["severity"] == "critical"
    assert updated["value"] == pytest.approx(20 / 65, abs=0.01)
    # 1,000 tires on their way to the distributor cover it: the alert resolves.
    shipment = f"SHP-DOS-{uuid.uuid4().hex[:6]}"
    inbound = created(shipment, arrival=ago(-600), destination=DISTRIBUTOR, sku=sku)
    rig.produce(inbound, departed(shipment))
    rig.feed.wait("low_days_of_supply", subject, "alert.resolved")
    assert_one_alert(rig, "low_days_of_supply", subject)


def test_dead_letter_rate_opens_updates_and_resolves(rig: Rig) -> None:
    topic = rig.kafka.shipments_topic
    rig.produce_raw(topic, [b"not json"] * 10 + [position_value() for _ in range(20)])
    opened = rig.feed.wait("dead_letter_rate", topic, "alert.opened")["alert"]
    assert opened["subject_type"] == "pipeline" and opened["severity"] == "critical"
    assert 0.2 < opened["value"] <= 1 and opened["threshold"] == 0.2
    assert f"{topic}: " in opened["message"] and "% of messages rejected" in opened["message"]
    # 40 of about 60 messages in the window rejected: the rate rises, the alert follows.
    rig.produce_raw(topic, [b"{}"] * 30)
    rig.feed.wait("dead_letter_rate", topic, "alert.updated", lambda a: a["value"] > 0.6)
    # Nothing more comes: once the window has passed there is no verdict and it resolves.
    rig.feed.wait("dead_letter_rate", topic, "alert.resolved")
    assert_one_alert(rig, "dead_letter_rate", topic)


def position_value() -> bytes:
    shipment = f"SHP-DLQ-{uuid.uuid4().hex[:6]}"
    ping = event("shipment.position", ago(0), shipment_id=shipment, lat=1.0, lon=1.0)
    return json.dumps(ping).encode()


# --- the webhook and acknowledgements ---------------------------------------------------------


def test_the_webhook_receives_every_alert_event(rig: Rig) -> None:
    shipment = f"SHP-HOOK-{uuid.uuid4().hex[:6]}"
    breakdown = event(
        "shipment.exception", ago(0), shipment_id=shipment, code="BREAKDOWN", severity="critical"
    )
    rig.produce(created(shipment, arrival=ago(-600)), departed(shipment), breakdown)
    rig.feed.wait("critical_exception", shipment, "alert.opened")
    receiver = rig.receiver
    assert receiver is not None
    published = {e["event_id"]: e for e in list(rig.feed.events)}
    received: dict[str, Any] = {}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with receiver.lock:
            received = {b["event_id"]: b for b in receiver.bodies}
        if published.keys() <= received.keys():
            break
        time.sleep(0.2)
    assert published.keys() <= received.keys(), "every alert event reaches the webhook"
    assert all(received[k] == published[k] for k in published)
    assert receiver.attempts > len(receiver.bodies), "the first POST failed (503), retried"
    (delivery,) = rig.wait_rows(
        "SELECT url, queued, delivered, failed, dropped, last_error FROM alert_delivery",
        lambda rows: rows[0]["delivered"] >= len(published),
    )
    assert delivery["url"].endswith("/alerts")
    assert delivery["last_error"] == "HTTP 503 Service Unavailable"
    assert delivery["failed"] == 0 and delivery["dropped"] == 0


def test_acknowledgements_apply_once_and_bad_ones_are_dead_lettered(rig: Rig) -> None:
    shipment = f"SHP-ACK-{uuid.uuid4().hex[:6]}"
    storm = event(
        "shipment.exception", ago(0), shipment_id=shipment, code="WEATHER", severity="critical"
    )
    rig.produce(created(shipment, arrival=ago(-600)), departed(shipment), storm)
    alert_id = rig.feed.wait("critical_exception", shipment, "alert.opened")["alert"]["alert_id"]

    publish_ack(rig.kafka, alert_id, "pat", "calling the driver")
    acked = rig.feed.wait("critical_exception", shipment, "alert.acknowledged")["alert"]
    assert (acked["acked_by"], acked["ack_note"], acked["revision"]) == (
        "pat",
        "calling the driver",
        2,
    )
    row = rig.alert_row(alert_id)
    assert (row["acked_by"], row["ack_note"], row["revision"], row["state"]) == (
        "pat", "calling the driver", 2, "open",
    )  # fmt: skip
    assert stamp(row["acked_at"]) == acked["acked_at"]

    # A second ack (another dashboard) changes nothing: the first wins. Then two invalid
    # messages and an ack of an alert that does not exist: dead letters.
    publish_ack(rig.kafka, alert_id, "ana", None)
    acks = rig.kafka.alert_acks_topic
    bad = [b"not json", b'{"schema_version": 1, "event_type": "alert.ack"}']
    rig.produce_raw(acks, bad)
    publish_ack(rig.kafka, str(uuid.uuid4()), "pat", None)
    dead = rig.wait_rows(
        f"SELECT reason FROM dead_letters WHERE topic = '{acks}' ORDER BY received_at, \"offset\"",
        lambda rows: len(rows) == 3,
    )
    reasons = sorted(r["reason"] for r in dead)
    assert reasons[0].startswith("Object missing required field"), reasons
    assert reasons[1].startswith("invalid JSON"), reasons
    assert reasons[2] == "unknown alert_id"
    offsets = rig.wait_rows(
        f"SELECT sum(next_offset)::BIGINT AS n FROM kafka_offsets WHERE topic = '{acks}'",
        lambda rows: rows == [{"n": 5}],
    )
    assert offsets == [{"n": 5}], "every ack message's offset is stored"
    assert rig.alert_row(alert_id)["acked_by"] == "pat"
    kinds = [e["event_type"] for e in rig.feed.of("critical_exception", shipment)]
    assert kinds.count("alert.acknowledged") == 1
    dlq = dlq_values(rig.kafka, acks + ".dlq", expected=3)
    assert set(bad) <= set(dlq) and len(dlq) == 3

    # Resolving keeps the acknowledgement.
    rig.produce(event("shipment.arrived", ago(0), shipment_id=shipment))
    resolved = rig.feed.wait("critical_exception", shipment, "alert.resolved")["alert"]
    assert resolved["acked_by"] == "pat" and resolved["revision"] == 3


def dlq_values(kafka: KafkaSettings, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(kafka.consumer_config(f"alert-test-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
    values: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    while len(values) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error() is None:
                values.append(msg.value() or b"")
    consumer.close()
    return values


# --- a dead webhook, a restart ----------------------------------------------------------------


def test_a_dead_webhook_does_not_stop_ingest_and_a_restart_keeps_open_alerts(
    broker: LocalBroker, tmp_path: Path
) -> None:
    kafka = alert_kafka(broker)
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    shipment = f"SHP-DEAD-{uuid.uuid4().hex[:6]}"
    with running_worker(broker, tmp_path, dead_url, kafka) as rig:
        strike = event(
            "shipment.exception", ago(1), shipment_id=shipment, code="STRIKE", severity="critical"
        )
        rig.produce(created(shipment, arrival=ago(-600)), departed(shipment), strike)
        opened = rig.feed.wait("critical_exception", shipment, "alert.opened")["alert"]
        # Ingest carries on while the webhook fails and retries.
        pings = [
            event("shipment.position", ago(0), shipment_id=shipment, lat=50.0, lon=8.0 + i / 100)
            for i in range(200)
        ]
        rig.produce(*pings)
        rig.wait_rows("SELECT accepted FROM ingest_stats", lambda rows: rows[0]["accepted"] == 203)
        (delivery,) = rig.wait_rows(
            "SELECT delivered, failed, last_error FROM alert_delivery",
            lambda rows: rows[0]["last_error"] is not None,
        )
        assert delivery["delivered"] == 0
        assert "ConnectionRefusedError" in delivery["last_error"]

    # Restarted on the same database and topics, the worker keeps the open alert: a new
    # critical exception updates it instead of opening a second one.
    with running_worker(broker, tmp_path, None, kafka) as rig:
        flood = event(
            "shipment.exception", ago(0), shipment_id=shipment, code="WEATHER", severity="critical"
        )
        rig.produce(flood)
        updated = rig.feed.wait("critical_exception", shipment, "alert.updated")["alert"]
        assert updated["alert_id"] == opened["alert_id"] and "WEATHER" in updated["message"]
        kinds = [e["event_type"] for e in rig.feed.of("critical_exception", shipment)]
        assert kinds == ["alert.opened", "alert.updated"]


def test_a_burst_of_changes_is_stored_a_slice_per_turn_while_acks_wait(
    broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of changes in one evaluation (a large network's silent trackers all moving
    together) are stored and published a slice per turn of the worker's loop, in the order
    found, not in one go that holds every batch behind it; acknowledgements wait until the
    last slice is stored, since the changes were found from the alerts without them."""
    monkeypatch.setattr(alerts, "CHANGES_PER_TURN", 4)
    shipments = [f"SHP-BURST-{i:02d}" for i in range(10)]
    db = tmp_path / "burst.duckdb"
    # Late (planned 30 minutes ago) and silent (departed 90 minutes ago, no position since).
    store_events(
        db, [e for s in shipments for e in (created(s, ago(30)), departed(s))], tolerance_minutes=1
    )
    expected = sorted([("late", s) for s in shipments] + [("stale_tracker", s) for s in shipments])
    rules = parse_rules({"late": {"open_after_s": 0.0}}, "test rules")
    store = Store(db, on_time_tolerance_minutes=1)
    engine = AlertEngine(store, alert_kafka(broker), rules)
    try:
        stored: list[list[tuple[str, str]]] = []
        waited_for_acks: list[bool] = []
        engine.tick(stored_batch=True, caught_up=True)  # starts the evaluation
        deadline = time.monotonic() + WAIT_S
        while not stored or len(stored[-1]) < len(expected):
            assert time.monotonic() < deadline, f"stored so far: {stored}"
            time.sleep(0.05)
            engine.tick(stored_batch=False, caught_up=True)
            rows = store.con.execute("SELECT rule, subject_id FROM alerts").fetchall()
            now_stored = sorted((str(rule), str(subject)) for rule, subject in rows)
            if now_stored and (not stored or now_stored != stored[-1]):
                stored.append(now_stored)
                waited_for_acks.append(not engine.accepts_acks)
        # Slices of 4, in the order the transitions found them (by rule, then subject).
        assert [len(s) for s in stored] == [4, 8, 12, 16, 20]
        assert all(s == expected[: len(s)] for s in stored)
        assert waited_for_acks == [True, True, True, True, False]
        history = store.con.execute("SELECT count(*) FROM alert_history").fetchone()
        assert history == (20,)
    finally:
        engine.close()
        store.close()
