"""Alert acknowledgements: the `alert.ack` message of the alerts interface, the dashboard's Kafka
settings from the CLI's environment variables, and publishing to the real local broker (or
failing in one line when Kafka is unreachable)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import click
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest import alert_acks
from ingest.alert_acks import build_ack, kafka_env, kafka_settings_from_env, publish_ack
from ingest.broker import LocalBroker, free_port
from ingest.cli import cli
from ingest.config import KafkaSettings
from ingest.errors import BrokerError, ConfigError
from ingest.kafka import ensure_topics
from ingest.processes import child_env

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=dt.UTC)
INTERFACE_KEYS = {"schema_version", "event_id", "event_type", "alert_id", "acked_by", "acked_at"}


# --- the message ---


def test_build_ack_is_the_interfaces_json() -> None:
    event_id = uuid.uuid4()
    value = build_ack("3f1c-alert", "pat", "  called the carrier  ", NOW, event_id=event_id)
    message = json.loads(value.decode("utf-8"))
    assert message == {
        "schema_version": 1,
        "event_id": str(event_id),
        "event_type": "alert.ack",
        "alert_id": "3f1c-alert",
        "acked_by": "pat",
        "acked_at": "2026-11-26T12:00:00.123Z",
        "note": "called the carrier",
    }
    assert type(message["schema_version"]) is int


def test_build_ack_is_pure_and_each_ack_gets_its_own_event_id() -> None:
    fixed = uuid.uuid4()
    assert build_ack("a", "pat", None, NOW, event_id=fixed) == build_ack(
        "a", "pat", None, NOW, event_id=fixed
    )
    first = json.loads(build_ack("a", "pat", None, NOW))["event_id"]
    second = json.loads(build_ack("a", "pat", None, NOW))["event_id"]
    assert first != second
    assert uuid.UUID(first).version == 4


@pytest.mark.parametrize("note", [None, "", "   \n "])
def test_no_note_means_no_note_field(note: str | None) -> None:
    message = json.loads(build_ack("a", "pat", note, NOW))
    assert set(message) == INTERFACE_KEYS


def test_acked_at_is_utc_whatever_the_offset() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    message = json.loads(
        build_ack("a", "pat", None, dt.datetime(2026, 11, 26, 13, 0, tzinfo=paris))
    )
    assert message["acked_at"] == "2026-11-26T12:00:00.000Z"


def test_names_and_notes_keep_their_characters() -> None:
    user = "zoë@example.com"
    note = 'quote " backslash \\ newline\n<b>tag</b> ' + "é" * 10
    message = json.loads(build_ack("a", user, note, NOW).decode("utf-8"))
    assert message["acked_by"] == user and message["note"] == note.strip()


def test_limits_are_inclusive() -> None:
    message = json.loads(build_ack("a" * 64, "u" * 64, "n" * 500, NOW))
    assert len(message["alert_id"]) == len(message["acked_by"]) == 64
    assert len(message["note"]) == 500


@pytest.mark.parametrize(
    "alert_id,user,note,now,fragment",
    [
        ("", "pat", None, NOW, "alert id"),
        ("a" * 65, "pat", None, NOW, "alert id"),
        (" a", "pat", None, NOW, "alert id"),
        ("a", "", None, NOW, "user name"),
        ("a", "u" * 65, None, NOW, "user name"),
        ("a", "pat ", None, NOW, "user name"),
        ("a", "pat", "n" * 501, NOW, "501 characters"),
        ("a", "pat", None, NOW.replace(tzinfo=None), "UTC offset"),
    ],
)
def test_build_ack_refuses_what_the_worker_would_reject(
    alert_id: str, user: str, note: str | None, now: dt.datetime, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment) as raised:
        build_ack(alert_id, user, note, now)
    assert "\n" not in str(raised.value)


# --- Kafka settings from the environment ---


def option_envvars(command: str) -> dict[str, str]:
    group = cli
    assert isinstance(group, click.Group)
    params = group.commands[command].params
    return {p.opts[0]: str(p.envvar) for p in params if isinstance(p, click.Option)}


def test_the_dashboard_reads_the_variables_of_the_cli_options() -> None:
    envvars = option_envvars("ingest")
    assert envvars["--bootstrap-servers"] == alert_acks.BOOTSTRAP_ENV
    assert envvars["--kafka-config"] == alert_acks.KAFKA_CONFIG_ENV
    for field, variable in alert_acks.TOPIC_ENV.items():
        option = "--" + field.replace("_", "-")
        assert envvars[option] == variable, option


def test_settings_from_an_empty_environment_are_the_defaults() -> None:
    assert kafka_settings_from_env({}) == KafkaSettings()
    assert kafka_settings_from_env({alert_acks.BOOTSTRAP_ENV: ""}) == KafkaSettings()


def test_settings_from_the_environment_and_back(tmp_path: Path, monkeypatch) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text("security.protocol=PLAINTEXT\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "TIRETRACK_KAFKA_CONFIG": "client.properties",  # relative to where the command ran
        "TIRETRACK_SHIPMENTS_TOPIC": "s",
        "TIRETRACK_INVENTORY_TOPIC": "i",
        "TIRETRACK_ALERTS_TOPIC": "al",
        "TIRETRACK_ALERT_ACKS_TOPIC": "acks",
    }
    settings = kafka_settings_from_env(env)
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert (settings.shipments_topic, settings.inventory_topic) == ("s", "i")
    assert (settings.alerts_topic, settings.alert_acks_topic) == ("al", "acks")
    assert settings.producer_config()["security.protocol"] == "PLAINTEXT"
    # A child started elsewhere (the dashboard runs in the repository) gets an absolute path.
    passed = kafka_env(settings)
    assert passed["TIRETRACK_KAFKA_CONFIG"] == str(properties.resolve())
    monkeypatch.chdir("/")
    again = kafka_settings_from_env(passed)
    assert again.properties_file == properties.resolve()
    assert kafka_env(again) == passed


def test_a_missing_properties_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    with pytest.raises(ConfigError, match="nope.properties: no such file"):
        kafka_settings_from_env({"TIRETRACK_KAFKA_CONFIG": str(missing)})


def test_the_dashboards_process_gets_the_kafka_settings(tmp_path: Path) -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:19092", alert_acks_topic="acks-x")
    env = child_env(tmp_path / "db.duckdb", settings)
    assert env["TIRETRACK_DB"] == str(tmp_path / "db.duckdb")
    assert kafka_settings_from_env(env) == settings


def test_acknowledgements_wait_seconds_not_minutes() -> None:
    config = alert_acks.ack_settings(KafkaSettings()).producer_config()
    assert float(config["message.timeout.ms"]) / 1000 <= alert_acks.FLUSH_TIMEOUT_S <= 5


# --- publishing ---


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "t-acks", "enable.partition.eof": True}
    )
    try:
        meta = consumer.list_topics(topic, timeout=5).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        got, ends = [], 0
        while ends < len(meta.partitions):
            msg = consumer.poll(5)
            assert msg is not None, "timed out reading the topic"
            if msg.error():
                ends += 1
                continue
            got.append((msg.key(), msg.value()))
        return got
    finally:
        consumer.close()


def test_publish_ack_puts_one_keyed_message_on_the_acks_topic(broker: LocalBroker) -> None:
    topic = f"alert-acks-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, alert_acks_topic=topic)
    ensure_topics(settings, [topic])
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)  # acked_at is to the ms
    publish_ack(settings, "alert-1", "pat", "on it")
    alert_acks.publish_acks(settings, ["alert-2", "alert-3"], "root", None)
    got = read_topic(broker.bootstrap_servers, topic)
    assert sorted(key.decode() for key, _ in got) == ["alert-1", "alert-2", "alert-3"]
    for key, value in got:
        message = json.loads(value)
        assert message["alert_id"] == key.decode()
        assert message["event_type"] == "alert.ack" and message["schema_version"] == 1
        assert before <= dt.datetime.fromisoformat(message["acked_at"]) <= dt.datetime.now(dt.UTC)
    by_key = {key.decode(): json.loads(value) for key, value in got}
    assert by_key["alert-1"]["acked_by"] == "pat" and by_key["alert-1"]["note"] == "on it"
    assert by_key["alert-2"]["acked_by"] == "root" and "note" not in by_key["alert-2"]


def test_nothing_is_sent_when_one_ack_is_invalid(broker: LocalBroker) -> None:
    topic = f"alert-acks-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, alert_acks_topic=topic)
    ensure_topics(settings, [topic])
    with pytest.raises(ValueError, match="alert id"):
        alert_acks.publish_acks(settings, ["good", ""], "pat", None)
    assert read_topic(broker.bootstrap_servers, topic) == []


def test_an_unreachable_kafka_is_a_one_line_broker_error_within_seconds() -> None:
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(BrokerError) as raised:
        publish_ack(KafkaSettings(bootstrap_servers=servers), "alert-1", "pat", None)
    elapsed = time.monotonic() - start
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("acknowledgement not sent") and servers in text
    print(f"\nunreachable Kafka reported after {elapsed:.2f} s: {text}")


def test_the_worker_accepts_what_the_dashboard_sends() -> None:
    """Both ends of the interface: the worker's own check of the acks topic takes our message."""
    from ingest.alerts import decode_ack

    for note in (None, "n" * 500, 'tabs\tquotes " and ünïcode'):
        value = build_ack("3f1c-alert", "zoë@example.com", note, NOW)
        ack = decode_ack(value)
        assert (ack.alert_id, ack.acked_by, ack.note) == ("3f1c-alert", "zoë@example.com", note)
        assert ack.acked_at == dt.datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=dt.UTC)
