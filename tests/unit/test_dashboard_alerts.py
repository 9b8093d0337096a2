"""The Alerts page and panel under Streamlit's AppTest, over a real DuckDB file holding alerts:
what is shown equals the table, filters, escaping, a database from before alerts, and who may
acknowledge (checked on the server, with acknowledgements published to the real local broker)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import streamlit as st
from confluent_kafka import Consumer, TopicPartition
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from dashboard import alert_queries, users
from dashboard.alert_queries import AlertChoice
from dashboard.auth import ACK_ROLES, PAGES, Identity, acknowledger
from dashboard.filters import Filters
from ingest.broker import LocalBroker
from ingest.config import KafkaSettings
from ingest.kafka import ensure_topics
from ingest.store import Store
from tests.apptest import assert_clean, run_page
from tests.browser.dashboard_db import store_events

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
PAGES_DIR = REPO / "dashboard" / "app_pages"
ALERTS_PAGE = "app_pages/alerts.py"
HOSTILE = '<img src=x onerror="alert(1)"> **bold** [link](javascript:alert(1)) `code` ü'
FAST = 1_000  # PBKDF2 iterations of the test users
ACCOUNTS = {"pat": "planner", "mo": "manager", "ana": "analyst", "root": "admin"}
PASSWORDS = {name: f"{name}-alerts-pass" for name in ACCOUNTS}

# The reference network's ids (data/*.csv).
PLANT, PLANT_2 = "PLT-DE-HAN", "PLT-ES-BUR"
DC, DC_2 = "DC-FR-LYS", "DC-ES-ZAZ"
PASSENGER = "P-1756514-82T-S"


def truck_sku() -> str:
    lines = (REPO / "data" / "skus.csv").read_text(encoding="utf-8").splitlines()[1:]
    return next(line.split(",")[0] for line in lines if line.split(",")[2] == "truck")


def a_distributor() -> str:
    lines = (REPO / "data" / "sites.csv").read_text(encoding="utf-8").splitlines()[1:]
    return next(
        line.split(",")[0]
        for line in lines
        if line.split(",")[2] == "distributor" and ",France," in line
    )


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule: str
    severity: str
    subject_type: str
    subject_id: str
    message: str
    state: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None = None
    value: float | None = None
    threshold: float | None = None
    revision: int = 1
    shipment_id: str | None = None
    site_id: str | None = None
    sku: str | None = None
    carrier_id: str | None = None
    origin_site_id: str | None = None
    destination_site_id: str | None = None
    acked_by: str | None = None
    acked_at: dt.datetime | None = None
    ack_note: str | None = None


def contract_events(now: dt.datetime, distributor: str) -> list[dict[str, Any]]:
    """Three planned shipments the alerts below are about (their lines matter to the SKU filter)."""
    plans = (
        ("SHP-AL-1", PLANT, DC, "CAR-NWS", PASSENGER),
        ("SHP-AL-2", DC, distributor, "CAR-GAL", truck_sku()),
        ("SHP-AL-3", PLANT_2, DC_2, "CAR-IBX", PASSENGER),
    )
    return [
        {
            "event_id": f"ev-{shipment_id}",
            "event_type": "shipment.created",
            "schema_version": 1,
            "occurred_at": (now - dt.timedelta(hours=3)).isoformat(),
            "source": "test",
            "shipment_id": shipment_id,
            "origin_site_id": origin,
            "destination_site_id": destination,
            "carrier_id": carrier,
            "mode": "road",
            "planned_departure": (now - dt.timedelta(hours=2)).isoformat(),
            "planned_arrival": (now + dt.timedelta(hours=2)).isoformat(),
            "lines": [{"sku": sku, "quantity": 40}],
        }
        for shipment_id, origin, destination, carrier, sku in plans
    ]


def scenario_alerts(now: dt.datetime, distributor: str) -> list[Alert]:
    h = dt.timedelta(hours=1)
    return [
        Alert(
            "a-crit", "critical_exception", "critical", "shipment", "SHP-AL-1", HOSTILE, "open",
            now - 2 * h, now - h, value=95, shipment_id="SHP-AL-1", carrier_id="CAR-NWS",
            origin_site_id=PLANT, destination_site_id=DC,
        ),
        Alert(
            "a-late-acked", "late", "warning", "shipment", "SHP-AL-2",
            "SHP-AL-2 is 95 min late", "open", now - 3 * h, now - h, value=95, threshold=60,
            revision=2, shipment_id="SHP-AL-2", carrier_id="CAR-GAL", origin_site_id=DC,
            destination_site_id=distributor, acked_by="pat", acked_at=now - h,
            ack_note="called the carrier",
        ),
        Alert(
            "a-stale", "stale_tracker", "info", "shipment", "SHP-AL-3", "SHP-AL-3 silent",
            "open", now - h, now - h, value=75, threshold=60, shipment_id="SHP-AL-3",
            carrier_id="CAR-IBX", origin_site_id=PLANT_2, destination_site_id=DC_2,
        ),
        Alert(
            "a-cover", "low_days_of_supply", "warning", "site_sku", f"{distributor}/{truck_sku()}",
            "cover below 7 days", "open", now - 5 * h, now - h, value=2.5, threshold=7,
            site_id=distributor, sku=truck_sku(),
        ),
        Alert(
            "a-dlq", "dead_letter_rate", "critical", "pipeline", "shipment-events",
            "3 % of messages rejected", "open", now - 4 * h, now - h, value=0.03, threshold=0.01,
        ),
        Alert(
            "a-resolved", "at_risk", "warning", "shipment", "SHP-AL-1", "SHP-AL-1 at risk",
            "resolved", now - 6 * h, now - h, resolved_at=now - h, value=70, threshold=60,
            revision=3, shipment_id="SHP-AL-1", carrier_id="CAR-NWS", origin_site_id=PLANT,
            destination_site_id=DC,
        ),
        Alert(
            "a-old", "late", "warning", "shipment", "SHP-AL-3", "SHP-AL-3 was late", "resolved",
            now - 40 * h, now - 30 * h, resolved_at=now - 30 * h, value=80, threshold=60,
            revision=2, shipment_id="SHP-AL-3", carrier_id="CAR-IBX",
        ),
    ]  # fmt: skip


def write_alerts(path: Path, alerts: list[Alert]) -> None:
    """Put alert rows in the worker's table (the worker's rules are engineer C's tests)."""
    con = duckdb.connect(str(path))
    try:
        for alert in alerts:
            row = asdict(alert)
            names = ", ".join(f'"{n}"' for n in row)
            con.execute(
                f"INSERT OR REPLACE INTO alerts ({names}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
    finally:
        con.close()


@dataclass(frozen=True)
class AlertsDb:
    path: Path
    alerts: list[Alert]
    distributor: str

    def by_id(self, alert_id: str) -> Alert:
        return next(a for a in self.alerts if a.alert_id == alert_id)


def build_alerts_db(path: Path) -> AlertsDb:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    distributor = a_distributor()
    store_events(path, contract_events(now, distributor))  # the worker's schema, via Store
    alerts = scenario_alerts(now, distributor)
    write_alerts(path, alerts)
    return AlertsDb(path, alerts, distributor)


@pytest.fixture(scope="module")
def alerts_db(tmp_path_factory: pytest.TempPathFactory) -> AlertsDb:
    return build_alerts_db(tmp_path_factory.mktemp("alerts") / "alerts.duckdb")


@pytest.fixture(scope="module")
def old_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database as a worker from before alerts left it: no `alerts` table."""
    path = tmp_path_factory.mktemp("old") / "old.duckdb"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store_events(path, contract_events(now, a_distributor()))
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE alerts")
    con.close()
    return path


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    st.cache_data.clear()  # each test reads its own database state, not 2-second-old results


def ids(sql: str, path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [row[0] for row in con.execute(f"SELECT alert_id FROM ({sql})").fetchall()]
    finally:
        con.close()


def expected_open(db: AlertsDb) -> list[Alert]:
    rank = {"critical": 0, "warning": 1, "info": 2}
    opened = [a for a in db.alerts if a.state == "open"]
    return sorted(opened, key=lambda a: (rank[a.severity], a.opened_at, a.alert_id))


# --- SQL, on the real DuckDB file ---


def test_store_creates_the_alerts_table_of_the_interface(tmp_path: Path) -> None:
    store = Store(tmp_path / "fresh.duckdb")
    columns = {
        name: kind
        for name, kind in store.con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'alerts'"
        ).fetchall()
    }
    store.close()
    assert set(asdict(scenario_alerts(dt.datetime.now(dt.UTC), "x")[0])) <= set(columns)
    assert columns["opened_at"] == columns["acked_at"] == "TIMESTAMP WITH TIME ZONE"


def test_open_and_resolved_alerts_in_order(alerts_db: AlertsDb) -> None:
    everything = AlertChoice()
    opened = ids(alert_queries.open_alerts_sql(Filters(), everything), alerts_db.path)
    assert opened == [a.alert_id for a in expected_open(alerts_db)]
    resolved = ids(alert_queries.resolved_alerts_sql(Filters(), everything), alerts_db.path)
    assert resolved == ["a-resolved"], "resolved in the last 24 h only"


@pytest.mark.parametrize(
    "choice,expected",
    [
        (AlertChoice(severity=("critical",)), {"a-crit", "a-dlq"}),
        (AlertChoice(rule=("late", "stale_tracker")), {"a-late-acked", "a-stale"}),
        (AlertChoice(state=("acknowledged",)), {"a-late-acked"}),
        (AlertChoice(state=("unacknowledged",)), {"a-crit", "a-stale", "a-cover", "a-dlq"}),
        (AlertChoice(state=("resolved",)), set()),
        (AlertChoice(severity=("warning",), state=("unacknowledged",)), {"a-cover"}),
    ],
)
def test_the_pages_own_filters(
    alerts_db: AlertsDb, choice: AlertChoice, expected: set[str]
) -> None:
    assert set(ids(alert_queries.open_alerts_sql(Filters(), choice), alerts_db.path)) == expected


def shared_cases(distributor: str) -> list[tuple[Filters, set[str]]]:
    return [
        # Carrier: the shipment alerts of that carrier; stock and pipeline alerts name none.
        (Filters(carrier=("CAR-NWS",)), {"a-crit", "a-cover", "a-dlq"}),
        # Region: any site the alert names is in it (Iberia: SHP-AL-3's plant and DC).
        (Filters(region=("Iberia",)), {"a-stale", "a-dlq"}),
        (Filters(region=("France",)), {"a-crit", "a-late-acked", "a-cover", "a-dlq"}),
        # Plant: the origin of shipment alerts; a distributor's stock alert stays.
        (Filters(plant=(PLANT,)), {"a-crit", "a-cover", "a-dlq"}),
        # Distributor: the destination; a stock alert when it is that distributor's.
        (Filters(distributor=(distributor,)), {"a-late-acked", "a-cover", "a-dlq"}),
        (Filters(distributor=("DST-NONE",)), {"a-dlq"}),
        # SKU: a stock alert's own SKU, a shipment alert by its plan's lines.
        (Filters(sku=(truck_sku(),)), {"a-late-acked", "a-cover", "a-dlq"}),
        (Filters(segment=("passenger",)), {"a-crit", "a-stale", "a-dlq"}),
        # Mode and status do not apply to alerts.
        (Filters(mode=("rail",), status=("late",)), set(ALL_OPEN)),
    ]


ALL_OPEN = ("a-crit", "a-late-acked", "a-stale", "a-cover", "a-dlq")


def test_the_sidebars_filters(alerts_db: AlertsDb) -> None:
    for filters, expected in shared_cases(alerts_db.distributor):
        sql = alert_queries.open_alerts_sql(filters, AlertChoice())
        assert set(ids(sql, alerts_db.path)) == expected, filters


def test_counts_by_severity_equal_the_open_alerts(alerts_db: AlertsDb) -> None:
    con = duckdb.connect(str(alerts_db.path), read_only=True)
    try:
        for filters, expected in shared_cases(alerts_db.distributor):
            rows = con.execute(alert_queries.open_counts_sql(filters)).fetchall()
            counted = {severity: alerts for severity, alerts, _ in rows}
            wanted = [alerts_db.by_id(i) for i in expected]
            assert counted == {
                s: sum(a.severity == s for a in wanted) for s in {a.severity for a in wanted}
            }, filters
    finally:
        con.close()


def test_page_filters_accept_only_known_values() -> None:
    hostile = "late') OR TRUE --"
    choice = AlertChoice.of(
        ["late", hostile, "no-such-rule"], ["critical", "CRITICAL"], ["resolved", hostile]
    )
    assert choice == AlertChoice(rule=("late",), severity=("critical",), state=("resolved",))


# --- the page and the panel under AppTest ---


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    def run(name: str, db: Path, filters: Filters | None = None, **query: str) -> AppTest:
        return run_page(monkeypatch, PAGES_DIR / f"{name}.py", db, filters, **query)

    return run


def frame_with(at: AppTest, column: str) -> Any:
    frames = [df.value for df in at.dataframe if column in df.value.columns]
    assert frames, [list(df.value.columns) for df in at.dataframe]
    return frames


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label or m.label.endswith("] " + label)]
    assert len(found) == 1, f"metric {label!r}: {[m.label for m in at.metric]}"
    return found[0]


PANEL = re.compile(r"🔔 \*\*(\d+) open alerts?\*\*")
BADGE = re.compile(r":(\w+)-badge\[(\d+) (critical|warning|info)\]")


def panel_counts(at: AppTest) -> dict[str, int] | None:
    """The alerts panel's numbers by severity (and 'total'), None when there is no panel."""
    found = [m.value for m in at.markdown if PANEL.search(m.value)]
    if not found:
        return None
    assert len(found) == 1
    counts = {severity: int(n) for _, n, severity in BADGE.findall(found[0])}
    counts["total"] = int(PANEL.search(found[0]).group(1))  # type: ignore[union-attr]
    return counts


def test_page_shows_open_and_recent_alerts_as_stored(alerts_db: AlertsDb, page) -> None:
    at = page("alerts", alerts_db.path)
    assert_clean(at)
    opened, resolved = frame_with(at, "Severity")
    expected = expected_open(alerts_db)
    assert list(opened["Message"]) == [a.message for a in expected]
    assert list(opened["Severity"]) == [a.severity for a in expected]
    acked = opened[opened["Acked by"].notna()]
    assert list(acked["Acked by"]) == ["pat"] and list(acked["Note"]) == ["called the carrier"]
    assert acked["Acked at"].iloc[0] == alerts_db.by_id("a-late-acked").acked_at
    late = opened[opened["Message"] == "SHP-AL-2 is 95 min late"].iloc[0]
    assert late["Value"] == "95 min (threshold 60 min)"
    values = dict(zip(opened["Message"], opened["Value"], strict=True))
    assert values[HOSTILE] == "95 min", "no threshold: the value alone"
    assert values["3 % of messages rejected"] == "3 % (threshold 1 %)", "a share in percent"
    assert values["cover below 7 days"] == "2.5 d (threshold 7 d)"
    assert late["Age"] == "3 h 00 min"
    assert list(resolved["Message"]) == ["SHP-AL-1 at risk"]
    assert metric(at, "Open alerts") == "5"
    assert metric(at, "Critical") == "2" and metric(at, "Warning") == "2"
    assert metric(at, "Info") == "1" and metric(at, "Not acknowledged") == "4"


def test_page_filters_and_the_sidebars(alerts_db: AlertsDb, page) -> None:
    at = page("alerts", alerts_db.path, Filters(carrier=("CAR-NWS",)))
    at.multiselect(key="alert_severity").set_value(["critical"]).run()
    assert_clean(at)
    (opened,) = frame_with(at, "Severity")  # no critical alert was resolved
    assert set(opened["Message"]) == {HOSTILE, "3 % of messages rejected"}
    at.multiselect(key="alert_severity").set_value([])
    at.multiselect(key="alert_state").set_value(["resolved"]).run()
    assert_clean(at)
    assert [s.value for s in at.subheader] == ["Resolved in the last 24 h"]
    (resolved,) = frame_with(at, "Severity")
    assert list(resolved["Message"]) == ["SHP-AL-1 at risk"]


def test_messages_are_shown_as_plain_text(alerts_db: AlertsDb, page) -> None:
    at = page("alerts", alerts_db.path)
    assert_clean(at)
    opened, _ = frame_with(at, "Severity")
    assert HOSTILE in set(opened["Message"]), "shown verbatim, as text"
    texts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.success, *at.warning)]
    assert not any("onerror" in t or "javascript:" in t for t in texts)
    assert all("onerror" not in h.proto.body for h in at.html)
    box = at.multiselect(key="ack_alerts")
    assert any(HOSTILE[:60] in option for option in box.options), "options are plain text"


@pytest.mark.parametrize("name", ["live_map", "delays", "inventory", "pipeline_health"])
def test_panel_on_every_planner_page_counts_the_table(alerts_db: AlertsDb, page, name) -> None:
    at = page(name, alerts_db.path)
    assert_clean(at)
    counts = panel_counts(at)
    expected = expected_open(alerts_db)
    assert counts == {
        "critical": sum(a.severity == "critical" for a in expected),
        "warning": sum(a.severity == "warning" for a in expected),
        "info": sum(a.severity == "info" for a in expected),
        "total": len(expected),
    }
    table, _ = frame_with(page("alerts", alerts_db.path), "Severity")
    assert counts["total"] == len(table)
    for severity in ("critical", "warning", "info"):
        assert counts[severity] == int((table["Severity"] == severity).sum())


def test_panel_follows_the_sidebar_filters(alerts_db: AlertsDb, page) -> None:
    filters = Filters(carrier=("CAR-NWS",))
    counts = panel_counts(page("delays", alerts_db.path, filters))
    table, _ = frame_with(page("alerts", alerts_db.path, filters), "Severity")
    assert counts is not None and counts["total"] == len(table) == 3
    assert counts["critical"] == 2 and counts["warning"] == 1 and counts["info"] == 0


@pytest.mark.parametrize("name", ["live_map", "delays", "inventory", "pipeline_health"])
def test_a_database_from_before_alerts_shows_no_panel(old_db: Path, page, name: str) -> None:
    at = page(name, old_db)
    assert_clean(at)
    assert panel_counts(at) is None


def test_the_alerts_page_on_a_database_from_before_alerts(old_db: Path, page) -> None:
    at = page("alerts", old_db)
    assert_clean(at)
    assert any("Alerts are not available" in i.value for i in at.info)
    assert not at.dataframe


# --- who may acknowledge ---


def test_only_planners_and_admins_acknowledge() -> None:
    assert {"planner", "admin"} == ACK_ROLES
    assert acknowledger(Identity("pat", "planner", "password")) == "pat"
    assert acknowledger(Identity("root", "admin", "oidc")) == "root"
    for role in ("analyst", "manager", None):
        assert acknowledger(Identity("x", role, "password")) is None
    assert acknowledger(None) is None, "the open demo has nobody to record"


def test_the_alerts_page_is_registered_for_exactly_its_roles() -> None:
    spec = next(p for p in PAGES if p.path == ALERTS_PAGE)
    assert spec.roles == {"planner", "analyst", "admin"}
    assert spec.roles >= ACK_ROLES


@dataclass(frozen=True)
class AckTopic:
    settings: KafkaSettings

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (key, value) on the acknowledgements topic so far."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"t-{uuid.uuid4().hex[:6]}",
                "enable.partition.eof": True,
            }
        )
        topic = self.settings.alert_acks_topic
        try:
            meta = consumer.list_topics(topic, timeout=5).topics[topic]
            consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
            got, ends = [], 0
            while ends < len(meta.partitions):
                msg = consumer.poll(5)
                assert msg is not None, "timed out reading the acknowledgements topic"
                if msg.error():
                    ends += 1
                    continue
                got.append((msg.key().decode(), json.loads(msg.value())))
            return got
        finally:
            consumer.close()


@pytest.fixture
def ack_topic(broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> AckTopic:
    """A fresh acknowledgements topic, given to the dashboard through the CLI's variables."""
    topic = f"alert-acks-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, alert_acks_topic=topic)
    ensure_topics(settings, [topic])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("TIRETRACK_ALERT_ACKS_TOPIC", topic)
    return AckTopic(settings)


def local_secrets(roles: dict[str, str] | None = None) -> dict[str, Any]:
    table = {
        name: {"role": role, "password_hash": users.hash_password(PASSWORDS[name], iterations=FAST)}
        for name, role in (roles or ACCOUNTS).items()
    }
    return {"auth": {"users": table}}


@pytest.fixture
def signed_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., tuple[AppTest, AlertsDb]]]:
    """The whole app (app.py, navigation and roles) signed in as a user, on a fresh database."""

    def make(name: str) -> tuple[AppTest, AlertsDb]:
        db = build_alerts_db(tmp_path / f"{name}.duckdb")
        monkeypatch.setenv("TIRETRACK_DB", str(db.path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets = local_secrets()
        at.run()
        at.text_input(key="login_name").input(name)
        at.text_input(key="login_password").input(PASSWORDS[name])
        at.button(key="login_submit").click().run()
        assert_clean(at)
        return at, db

    yield make


def reachable(at: AppTest, path: str) -> bool:
    try:
        at.switch_page(path)
    except ValueError:
        return False
    return True


def submit_ack(at: AppTest, alert_ids: list[str], note: str = "") -> AppTest:
    at.multiselect(key="ack_alerts").set_value(alert_ids)
    at.text_input(key="ack_note").input(note)
    return at.button(key="ack_submit").click().run()


def test_a_planner_acknowledges_and_the_ack_is_on_kafka(signed_in, ack_topic: AckTopic) -> None:
    at, db = signed_in("pat")
    assert panel_counts(at) is not None, "the live map shows the panel"
    links = [link.proto for link in at.get("page_link")]
    assert [(link.label, link.page) for link in links] == [("Alerts page", "alerts")]
    at.switch_page(ALERTS_PAGE).run()
    assert_clean(at)
    box = at.multiselect(key="ack_alerts")
    assert not box.disabled
    assert set(box.options) == {
        f"{a.severity.upper()} · {alert_queries.RULE_BY_KEY[a.rule].label} · {a.message[:69]}"
        + ("…" if len(a.message) > 70 else "")
        for a in expected_open(db)
        if a.acked_by is None
    }, "only open alerts nobody acknowledged yet"
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)  # acked_at is to the ms
    at = submit_ack(at, ["a-crit", "a-dlq"], "  on it  ")
    assert_clean(at)
    assert any(
        "Acknowledgement sent for 2 alerts; it appears when the worker has stored it." in s.value
        for s in at.success
    )
    sent = ack_topic.messages()
    assert sorted(key for key, _ in sent) == ["a-crit", "a-dlq"]
    for key, value in sent:
        assert value["alert_id"] == key and value["event_type"] == "alert.ack"
        assert value["acked_by"] == "pat", "the signed-in user, never a name from the browser"
        assert value["note"] == "on it"
        assert before <= dt.datetime.fromisoformat(value["acked_at"]) <= dt.datetime.now(dt.UTC)

    # Until the worker stores them, the page says they are on their way; then the table shows
    # who and when, and the note disappears.
    st.cache_data.clear()
    at.run()
    assert any("2 acknowledgement(s) sent" in i.value for i in at.info)
    acked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stored = [
        a.__class__(**(asdict(a) | {"acked_by": "pat", "acked_at": acked_at, "revision": 2}))
        for a in db.alerts
        if a.alert_id in ("a-crit", "a-dlq")
    ]
    write_alerts(db.path, stored)
    st.cache_data.clear()
    at.run()
    assert_clean(at)
    assert not any("acknowledgement(s) sent" in i.value for i in at.info)
    opened, _ = frame_with(at, "Severity")
    shown = opened.set_index("Message")
    assert shown.loc[HOSTILE, "Acked by"] == "pat"
    assert shown.loc[HOSTILE, "Acked at"] == acked_at


def test_an_analyst_sees_alerts_but_cannot_acknowledge(signed_in, ack_topic: AckTopic) -> None:
    at, _db = signed_in("ana")
    assert panel_counts(at) is not None
    at.switch_page(ALERTS_PAGE).run()
    assert_clean(at)
    assert frame_with(at, "Severity"), "the alerts are shown"
    box, button = at.multiselect(key="ack_alerts"), at.button(key="ack_submit")
    assert box.disabled and button.disabled
    assert any("planners and admins acknowledge them" in c.value for c in at.caption)
    # Disabled on the server: Streamlit drops any value a client sends for these widgets.
    with pytest.raises(AppTestError, match="disabled"):
        box.set_value(["a-crit"])
    assert ack_topic.messages() == []


def test_a_role_taken_away_after_the_page_was_shown_is_refused(
    signed_in, ack_topic: AckTopic
) -> None:
    at, _db = signed_in("pat")
    at.switch_page(ALERTS_PAGE).run()
    assert not at.button(key="ack_submit").disabled
    at.secrets = local_secrets(ACCOUNTS | {"pat": "analyst"})  # an admin demoted pat meanwhile
    at = submit_ack(at, ["a-crit"])  # chosen and clicked in the form shown to the planner
    assert_clean(at)
    assert not at.success
    assert at.button(key="ack_submit").disabled
    assert any("Your role (analyst)" in c.value for c in at.caption)
    assert ack_topic.messages() == []


def test_a_manager_has_no_alerts_page_and_no_panel(signed_in) -> None:
    at, _db = signed_in("mo")
    assert [t.value for t in at.title] == ["Live map"]
    assert panel_counts(at) is None, "the panel would link to a page the role does not have"
    assert not reachable(at, ALERTS_PAGE)


def test_the_open_demo_shows_alerts_and_asks_for_a_sign_in_to_acknowledge(
    alerts_db: AlertsDb, page
) -> None:
    at = page("alerts", alerts_db.path)
    assert_clean(at)
    assert at.button(key="ack_submit").disabled
    assert any("open demo" in c.value for c in at.caption)


def test_kafka_unreachable_is_one_line_on_the_page(
    signed_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.broker import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    at, _db = signed_in("root")
    at.switch_page(ALERTS_PAGE).run()
    at = submit_ack(at, ["a-crit"])
    assert not at.exception
    assert len(at.error) == 1 and "acknowledgement not sent" in at.error[0].value
    assert "\n" not in at.error[0].value
    assert not at.success
