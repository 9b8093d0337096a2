"""Acknowledgements of alerts: the `alert.ack` message, and publishing it to the acks topic.

The dashboard acknowledges an alert by publishing one message per alert (key = alert_id) to
`KafkaSettings.alert_acks_topic`; the worker validates it, applies it exactly once to the
`alerts` table and announces `alert.acknowledged`, so every dashboard session and the store
agree. The dashboard never talks to Kafka otherwise: it takes its Kafka settings from the
same environment variables as the `tiretrack` command (`kafka_settings_from_env`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from confluent_kafka import KafkaException

from ingest.config import DEFAULT_BOOTSTRAP, KafkaSettings
from ingest.errors import BrokerError, ConfigError
from ingest.kafka import EventProducer

SCHEMA_VERSION = 1
EVENT_TYPE = "alert.ack"
MAX_ALERT_ID = 64
MAX_USER = 64
MAX_NOTE = 500
# An acknowledgement is a click in a page: fail within seconds rather than hang the page.
DELIVERY_TIMEOUT_S = 4.0
FLUSH_TIMEOUT_S = 5.0

# The environment variables of the `tiretrack` command's Kafka options (ingest/cli.py).
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_CONFIG_ENV = "TIRETRACK_KAFKA_CONFIG"
TOPIC_ENV = {
    "shipments_topic": "TIRETRACK_SHIPMENTS_TOPIC",
    "inventory_topic": "TIRETRACK_INVENTORY_TOPIC",
    "alerts_topic": "TIRETRACK_ALERTS_TOPIC",
    "alert_acks_topic": "TIRETRACK_ALERT_ACKS_TOPIC",
}


# --- the message ---


def _rfc3339(instant: dt.datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("the acknowledgement time must carry a UTC offset")
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_note(note: str | None) -> str | None:
    """The note as sent: surrounding blanks removed, None when nothing is left."""
    text = (note or "").strip()
    return text or None


def build_ack(
    alert_id: str,
    user: str,
    note: str | None,
    now: dt.datetime,
    *,
    event_id: uuid.UUID | None = None,
) -> bytes:
    """The `alert.ack` value (UTF-8 JSON) of the alerts interface; ValueError (one line) when
    an argument breaks its limits. Pure except for a fresh event id when none is given."""
    if not 0 < len(alert_id) <= MAX_ALERT_ID or alert_id != alert_id.strip():
        raise ValueError(f"alert id must be 1-{MAX_ALERT_ID} characters without blanks around")
    if not 0 < len(user) <= MAX_USER or user != user.strip():
        raise ValueError(f"user name must be 1-{MAX_USER} characters without blanks around")
    text = clean_note(note)
    if text is not None and len(text) > MAX_NOTE:
        raise ValueError(f"the note has {len(text)} characters; at most {MAX_NOTE} are allowed")
    message: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": EVENT_TYPE,
        "alert_id": alert_id,
        "acked_by": user,
        "acked_at": _rfc3339(now),
    }
    if text is not None:  # optional in the interface: absent rather than null
        message["note"] = text
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- Kafka settings of a process that has no command line (the dashboard) ---


def kafka_settings_from_env(env: Mapping[str, str] | None = None) -> KafkaSettings:
    """KafkaSettings from the `tiretrack` command's environment variables (defaults otherwise)."""
    environ = os.environ if env is None else env

    def value(name: str) -> str | None:
        return environ.get(name) or None

    config = value(KAFKA_CONFIG_ENV)
    properties = Path(config) if config else None
    if properties is not None and not properties.is_file():
        raise ConfigError(f"{KAFKA_CONFIG_ENV}={properties}: no such file")
    defaults = KafkaSettings()
    return KafkaSettings(
        bootstrap_servers=value(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP,
        properties_file=properties,
        shipments_topic=value(TOPIC_ENV["shipments_topic"]) or defaults.shipments_topic,
        inventory_topic=value(TOPIC_ENV["inventory_topic"]) or defaults.inventory_topic,
        alerts_topic=value(TOPIC_ENV["alerts_topic"]) or defaults.alerts_topic,
        alert_acks_topic=value(TOPIC_ENV["alert_acks_topic"]) or defaults.alert_acks_topic,
    )


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """The environment that makes `kafka_settings_from_env` rebuild these settings in a child
    process started elsewhere (the properties file's path made absolute)."""
    env = {BOOTSTRAP_ENV: kafka.bootstrap_servers}
    env |= {var: str(getattr(kafka, name)) for name, var in TOPIC_ENV.items()}
    if kafka.properties_file is not None:
        env[KAFKA_CONFIG_ENV] = str(kafka.properties_file.resolve())
    return env


# --- publishing ---


def ack_settings(kafka: KafkaSettings) -> KafkaSettings:
    """The settings with a delivery timeout short enough for a page to wait on."""
    timeout_ms = str(round(DELIVERY_TIMEOUT_S * 1000))
    return dataclasses.replace(kafka, extra=kafka.extra | {"message.timeout.ms": timeout_ms})


def publish_acks(
    kafka: KafkaSettings,
    alert_ids: Sequence[str],
    user: str,
    note: str | None,
    now: dt.datetime | None = None,
) -> None:
    """Publish one acknowledgement per alert and wait for Kafka to have them all; BrokerError
    (one line) within about FLUSH_TIMEOUT_S when Kafka cannot take them."""
    at = now or dt.datetime.now(dt.UTC)
    values = [(alert_id, build_ack(alert_id, user, note, at)) for alert_id in alert_ids]
    if not values:
        return
    settings = ack_settings(kafka)
    topic = settings.alert_acks_topic
    try:
        producer = EventProducer(settings)
        for alert_id, value in values:
            producer.send(topic, alert_id, value)
        producer.flush(FLUSH_TIMEOUT_S)
    except KafkaException as e:
        raise BrokerError(f"acknowledgement not sent: {e.args[0].str()}") from e
    except BrokerError as e:
        raise BrokerError(
            f"acknowledgement not sent: Kafka at {settings.bootstrap_servers} did not confirm "
            f"it (topic {topic}; {e}); is Kafka reachable from the dashboard?"
        ) from e


def publish_ack(kafka: KafkaSettings, alert_id: str, user: str, note: str | None) -> None:
    """Publish one acknowledgement (the interface's function); see `publish_acks`."""
    publish_acks(kafka, [alert_id], user, note)
