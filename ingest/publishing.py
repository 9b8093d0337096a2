"""Publishes simulator output or a recorded JSON Lines file to Kafka, paced or at full speed."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ingest.config import KafkaSettings
from ingest.errors import ConfigError
from ingest.kafka import EventProducer, ensure_topics
from ingest.network import load_network
from ingest.simulator import SimMessage, SimulationSettings, simulate

log = logging.getLogger(__name__)


def to_jsonl(message: SimMessage) -> bytes:
    """One JSON Lines record; values that are not UTF-8 (malformed on purpose) go as base64."""
    record: dict[str, Any] = {
        "family": message.family,
        "key": message.key,
        "emit_at": message.emit_at.isoformat(),
    }
    try:
        record["value"] = message.value.decode("utf-8")
    except UnicodeDecodeError:
        record["value_b64"] = base64.b64encode(message.value).decode("ascii")
    return orjson.dumps(record) + b"\n"


def from_jsonl(lines: Iterable[bytes], source: str) -> Iterator[SimMessage]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            value = (
                record["value"].encode("utf-8")
                if "value" in record
                else base64.b64decode(record["value_b64"])
            )
            yield SimMessage(
                family=record["family"],
                key=record["key"],
                value=value,
                emit_at=dt.datetime.fromisoformat(record["emit_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{source}:{lineno}: not a tiretrack JSONL record ({e})") from e


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, _signum: int, _frame: Any) -> None:
        self.requested = True


def publish(
    kafka: KafkaSettings,
    messages: Iterable[SimMessage],
    *,
    pace: bool,
    out: IO[bytes] | None = None,
) -> int:
    """Send messages to their family's topic (or to `out`), sleeping until emit_at when pacing."""
    producer = None
    if out is None:
        ensure_topics(kafka, kafka.topics)
        producer = EventProducer(kafka)
    stop = _Stop()
    sent = 0
    last_log = time.monotonic()
    for message in messages:
        if stop.requested:
            break
        if pace:
            wait = (message.emit_at - dt.datetime.now(dt.UTC)).total_seconds()
            while wait > 0 and not stop.requested:
                time.sleep(min(wait, 0.25))
                wait = (message.emit_at - dt.datetime.now(dt.UTC)).total_seconds()
            if stop.requested:
                break
        if producer is not None:
            producer.send(kafka.topic_for(message.family), message.key, message.value)
        else:
            assert out is not None
            out.write(to_jsonl(message))
        sent += 1
        if time.monotonic() - last_log >= 10:
            log.info("published %d messages", sent)
            last_log = time.monotonic()
    if producer is not None:
        producer.flush()
    return sent


def run_simulation(
    kafka: KafkaSettings,
    *,
    seed: int,
    rate: float,
    duration: float | None,
    max_events: int | None,
    time_scale: float,
    backfill: bool,
    duplicate_rate: float,
    out_of_order_rate: float,
    malformed_rate: float,
    out: Path | None,
) -> str:
    """Run the simulator with CLI settings; returns a one-line summary."""
    now = dt.datetime.now(dt.UTC)
    if backfill and duration is None:
        raise ConfigError("--backfill needs --duration (seconds of history to generate)")
    settings = SimulationSettings(
        seed=seed,
        rate=rate,
        time_scale=time_scale,
        start=now - dt.timedelta(seconds=duration) if backfill and duration else now,
        duration_s=duration,
        max_events=max_events,
        duplicate_rate=duplicate_rate,
        out_of_order_rate=out_of_order_rate,
        malformed_rate=malformed_rate,
    )
    messages = simulate(settings, load_network())
    started = time.monotonic()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:
            sent = publish(kafka, messages, pace=not backfill, out=handle)
        where = str(out)
    else:
        sent = publish(kafka, messages, pace=not backfill)
        where = kafka.bootstrap_servers
    elapsed = time.monotonic() - started
    return f"{sent} messages to {where} in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):.0f}/s)"


def replay_file(kafka: KafkaSettings, path: Path, *, pace: bool) -> int:
    with path.open("rb") as handle:
        return publish(kafka, from_jsonl(handle, str(path)), pace=pace)
