"""Settings: one frozen object per command, and the one place that builds librdkafka configs."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.errors import ConfigError

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DB = REPO_DIR / "data" / "runtime" / "tiretrack.duckdb"
DEFAULT_DEMO_DB = REPO_DIR / "data" / "runtime" / "demo.duckdb"
DEFAULT_SECRETS = REPO_DIR / ".streamlit" / "secrets.toml"
DEFAULT_ALERT_RULES = REPO_DIR / "data" / "alert_rules.toml"
DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
# DuckDB's memory_limit for the worker. Its default (80 % of RAM) lets the buffer pool keep every
# block it ever read or wrote: the worker held 1.8 GiB at 10M events. Cold blocks are read back
# from the file when needed; data not checkpointed yet may spill to <db>.tmp.
DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_SHIPMENTS_TOPIC = "shipment-events"
DEFAULT_INVENTORY_TOPIC = "inventory-events"
DEFAULT_ALERTS_TOPIC = "alerts"
DEFAULT_ALERT_ACKS_TOPIC = "alert-acks"
DEFAULT_GROUP_ID = "tiretrack-ingest"
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 9494
DLQ_SUFFIX = ".dlq"
PRODUCER_MESSAGE_MAX_BYTES = 100_000_000

# Settings that make a consumer join and fetch quickly on the local single-node broker.
# Real Kafka rejects session timeouts under 6 s by default, so these apply to loopback only.
# The local broker answers a fetch with nothing when finding the offset takes longer than the
# fetch's max wait, and that time grows with the log: at 10M messages a 10 ms wait read 0
# messages/s, 25 ms 5k/s, 50 ms 331k/s and 100 ms 486k/s. 100 ms keeps headroom, at the cost of
# up to 100 ms more latency for a caught-up consumer (the broker holds a fetch the whole wait).
LOCAL_CONSUMER_TUNING = {
    "session.timeout.ms": "2000",
    "heartbeat.interval.ms": "500",
    "fetch.wait.max.ms": "100",
}
# Consumer defaults a properties file may override. The worker takes 20,000 messages per
# batch; librdkafka's default prefetch (64 MB of messages, about 150,000 of ours, plus its
# bookkeeping per message) sat full the whole time a backlog was read, in the worker's peak
# memory. 16 MB still keeps several batches ready.
CONSUMER_DEFAULTS = {"queued.max.messages.kbytes": "16384"}
# Properties a user may not override: exactly-once rests on them (offsets live in DuckDB).
FORCED_CONSUMER_PROPS = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "enable.partition.eof": "true",
    "auto.offset.reset": "earliest",
}


def read_properties(path: Path) -> dict[str, str]:
    """Parse a Java-style client.properties file (key=value, # and ! comments)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read Kafka properties file {path}: {e.strerror}") from e
    props: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep <= 0:
            raise ConfigError(f"{path}:{lineno}: expected key=value, got {line[:40]!r}")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


def is_loopback(bootstrap_servers: str) -> bool:
    """True when every bootstrap server is on this machine (the local development broker)."""
    for server in bootstrap_servers.split(","):
        host = server.strip().rsplit(":", 1)[0].strip("[]")
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


@dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how to talk to it; builds every librdkafka dict in the project."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    properties_file: Path | None = None
    shipments_topic: str = DEFAULT_SHIPMENTS_TOPIC
    inventory_topic: str = DEFAULT_INVENTORY_TOPIC
    alerts_topic: str = DEFAULT_ALERTS_TOPIC
    alert_acks_topic: str = DEFAULT_ALERT_ACKS_TOPIC
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("--bootstrap-servers is empty: give HOST:PORT[,HOST:PORT...]")
        named = (
            self.shipments_topic,
            self.inventory_topic,
            self.alerts_topic,
            self.alert_acks_topic,
        )
        if len(set(named)) < len(named):
            raise ConfigError("the shipments, inventory, alerts and alert-acks topics must differ")

    def _base(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "tiretrack",
        }
        if self.properties_file is not None:
            conf.update(read_properties(self.properties_file))
        conf.update(self.extra)
        return conf

    @property
    def local(self) -> bool:
        return is_loopback(self._base()["bootstrap.servers"])

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "group.id": group_id,
            "partition.assignment.strategy": "range",
            **CONSUMER_DEFAULTS,
        }
        if self.local:
            conf.update(LOCAL_CONSUMER_TUNING)
        conf.update(self._base())
        conf.update(FORCED_CONSUMER_PROPS)
        return conf

    def producer_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "enable.idempotence": "true",
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": "20",
            # librdkafka refuses values over 1 MB before sending by default: a rejected message
            # that large could then never reach its dead-letter topic, and the worker would stop
            # on it. Let the broker decide (100 MB: librdkafka's own receive limit).
            "message.max.bytes": str(PRODUCER_MESSAGE_MAX_BYTES),
        }
        conf.update(self._base())
        return conf

    def admin_config(self) -> dict[str, Any]:
        return self._base()

    def topic_for(self, family: str) -> str:
        return self.shipments_topic if family == "shipments" else self.inventory_topic

    @property
    def topics(self) -> tuple[str, str]:
        return (self.shipments_topic, self.inventory_topic)


@dataclass(frozen=True)
class ServeSettings:
    """Where the worker serves the database over Quack."""

    host: str = DEFAULT_SERVE_HOST
    port: int = DEFAULT_SERVE_PORT
    token: str | None = None  # None: a random token, written to <db>.token (mode 0600)
    enabled: bool = True


@dataclass(frozen=True)
class IngestSettings:
    kafka: KafkaSettings
    db_path: Path = DEFAULT_DB
    group_id: str = DEFAULT_GROUP_ID
    serve: ServeSettings = field(default_factory=ServeSettings)
    batch_size: int = 20000
    batch_timeout_s: float = 0.2
    memory_limit: str = DEFAULT_MEMORY_LIMIT  # DuckDB's memory_limit for the worker
    stop_at_end: bool = False
    on_time_tolerance_minutes: float = 60.0
    progress_interval_s: float = 10.0
    startup_timeout_s: float = 0.0  # 0: keep retrying until Kafka answers or we are stopped
    alert_rules_path: Path = DEFAULT_ALERT_RULES
    # Event-time thresholds of the alert rules are divided by this (the demo's simulator scale).
    alert_time_scale: float = 1.0
    webhook_url: str | None = None  # None: alerts go to the alerts topic and the table only
    webhook_timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S


def env_default(name: str, fallback: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else fallback
