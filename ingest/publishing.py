"""Publishes simulator output or a recorded JSON Lines file to Kafka, paced or at full speed,
at least once across broker outages."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from confluent_kafka import KafkaError, KafkaException, Message

from ingest.config import KafkaSettings
from ingest.errors import BrokerError, ConfigError
from ingest.kafka import EventProducer, ensure_topics, topic_ids
from ingest.network import load_network
from ingest.simulator import SimMessage, SimulationSettings, simulate

log = logging.getLogger(__name__)

STALL_S = 3.0  # a message unacknowledged this long: ask the broker what is going on
CHECK_EVERY_S = 1.0  # at most one broker check a second, and only while something looks wrong
CHECK_TIMEOUT_S = 2.0
# Kept well below librdkafka's local queue (100,000 messages) so that sending never blocks
# inside the client while the broker is away: the publisher waits here, still checking.
MAX_UNACKED = 50_000
DRAIN_TIMEOUT_S = 30.0
# Delivery errors a new attempt can fix (the broker was away, or the producer had to be
# replaced); any other error counts the message as lost.
RESEND_ERRORS = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._FATAL,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    }
)


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


class _Unacked(NamedTuple):
    topic: str
    key: str
    value: bytes


class Publisher:
    """Publishes to Kafka at least once across broker outages: every message is kept until the
    broker acknowledges it. While the broker is unreachable, messages wait (one log line says
    so). A broker that comes back without its data (the local one, restarted) gets its topics
    again and a new producer (an idempotent producer cannot continue against a broker that
    forgot it), and every message not acknowledged yet is sent again; messages the old broker
    had acknowledged are gone with its data."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        # The checks' admin clients: librdkafka's per-attempt connection errors stay off stderr
        # (a failed check says what is wrong in one line).
        self._admin = dataclasses.replace(kafka, extra=kafka.extra | {"log_level": "2"})
        ensure_topics(self._admin, kafka.topics)
        self._topic_ids = topic_ids(self._admin, kafka.topics)
        self._ids = itertools.count()
        self._unacked: dict[int, _Unacked] = {}
        self._acked = 0
        self._acked_before = 0  # at the previous check
        self._progress_at = time.monotonic()  # last check that saw an ack, or nothing waiting
        self._resend: list[int] = []
        self._generation = 0
        self._producer = self._new_producer()
        self._suspect: str | None = None  # a client error that may mean the broker went away
        self._fatal: str | None = None  # the producer cannot go on
        self._down_since: float | None = None
        self._next_check = 0.0
        self.outages = 0
        self.restarts = 0
        self.resent = 0
        self.lost: Counter[str] = Counter()  # reason -> messages

    def _new_producer(self) -> EventProducer:
        return EventProducer(self._kafka, functools.partial(self._on_error, self._generation))

    def _on_error(self, generation: int, error: KafkaError) -> None:
        if generation != self._generation:
            return
        if error.fatal():
            self._fatal = error.str()
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._suspect = error.str()
        elif error.code() == KafkaError._TRANSPORT:  # a closed connection: worth a check
            self._suspect = self._suspect or error.str()
        else:
            log.debug("Kafka producer: %s", error.str())

    def _on_delivery(
        self, generation: int, message_id: int, error: KafkaError | None, _msg: Message
    ) -> None:
        if generation != self._generation:
            return  # a replaced producer's report: the message was sent again by the new one
        if error is None:
            self._unacked.pop(message_id, None)
            self._acked += 1
        elif error.code() in RESEND_ERRORS or error.retriable() or error.fatal():
            self._resend.append(message_id)
        elif self._unacked.pop(message_id, None) is not None:
            self._count_lost(error.str())

    def _count_lost(self, reason: str) -> None:
        if reason not in self.lost:
            log.warning("Kafka refused a message (%s): counted as lost", reason)
        self.lost[reason] += 1

    @property
    def full(self) -> bool:
        """Enough messages wait for an acknowledgement: the caller should `service()` first."""
        return len(self._unacked) >= MAX_UNACKED

    def send(self, topic: str, key: str, value: bytes) -> None:
        message_id = next(self._ids)
        self._unacked[message_id] = _Unacked(topic, key, value)
        self._produce(message_id, topic, key, value)
        if time.monotonic() >= self._next_check:
            self._check_if_due()

    def _produce(self, message_id: int, topic: str, key: str, value: bytes) -> None:
        report = functools.partial(self._on_delivery, self._generation, message_id)
        try:
            self._producer.send(topic, key, value, on_delivery=report)
        except KafkaException as e:
            error = e.args[0]
            if error.fatal() or error.code() == KafkaError._FATAL:
                self._fatal = error.str()  # the message waits for a new producer
            else:  # refused before sending (an unknown topic, say): sending again cannot help
                self._unacked.pop(message_id)
                self._count_lost(error.str())

    def _send_again(self, message_ids: Iterable[int]) -> int:
        count = 0
        for message_id in message_ids:
            message = self._unacked.get(message_id)
            if message is not None:
                self._produce(message_id, *message)
                count += 1
        self.resent += count
        return count

    def service(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports (waiting up to `timeout_s` for one), send again what timed
        out, and check the broker when something looks wrong."""
        try:
            self._producer.poll(timeout_s)
        except KafkaException as e:
            self._fatal = e.args[0].str()
        if self._resend and self._fatal is None:
            again, self._resend = self._resend, []
            self._send_again(again)
        self._check_if_due()

    def _check_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        if self._acked != self._acked_before or not self._unacked:
            self._acked_before = self._acked
            self._progress_at = now
        stalled = now - self._progress_at > STALL_S
        if self._fatal or self._suspect or self._down_since is not None or stalled:
            self._check_broker()
            self._next_check = time.monotonic() + CHECK_EVERY_S

    def _check_broker(self) -> None:
        where = self._kafka.bootstrap_servers
        topics = self._kafka.topics
        try:
            current = topic_ids(self._admin, topics, timeout_s=CHECK_TIMEOUT_S)
            if len(current) < len(topics):  # a broker that lost its data: create them again
                ensure_topics(self._admin, topics, timeout_s=CHECK_TIMEOUT_S)
                current = topic_ids(self._admin, topics, timeout_s=CHECK_TIMEOUT_S)
        except BrokerError as e:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self.outages += 1
                log.warning(
                    "Kafka at %s unreachable (%s): messages wait until it is back "
                    "(%d unacknowledged so far)",
                    where,
                    self._suspect or e,
                    len(self._unacked),
                )
            return
        back = (
            f" is back after {time.monotonic() - self._down_since:.0f} s and"
            if self._down_since is not None
            else ""
        )
        lost_data = current != self._topic_ids
        if lost_data or self._fatal:
            why = (
                "lost its data (restarted?): topics created again"
                if lost_data
                else f"stopped the producer ({self._fatal})"
            )
            self._topic_ids = current
            count = self._restart_producer()
            log.warning(
                "Kafka at %s%s %s; %d unacknowledged message(s) sent again by a new producer",
                where,
                back,
                why,
                count,
            )
        elif self._down_since is not None:
            log.warning(
                "Kafka at %s is back after %.0f s; %d waiting message(s) being delivered",
                where,
                time.monotonic() - self._down_since,
                len(self._unacked),
            )
        self._down_since = None
        self._suspect = None

    def _restart_producer(self) -> int:
        """Replace the producer and send every unacknowledged message again; returns how many."""
        try:  # reports the old producer holds already: fewer messages sent twice
            self._producer.poll(0)
        except KafkaException as e:
            log.debug("old producer: %s", e)
        self._generation += 1
        self._producer = self._new_producer()
        self._fatal = None
        self._resend = []
        self.restarts += 1
        return self._send_again(list(self._unacked))

    def close(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until Kafka has acknowledged every message (through outages, up to
        `timeout_s`); one line on what was sent again or lost; BrokerError when any was."""
        deadline = time.monotonic() + timeout_s
        while self._unacked and time.monotonic() < deadline:
            self.service(0.1)
        left = len(self._unacked)
        if left:
            self.lost[f"not acknowledged within {timeout_s:.0f} s"] += left
        lost = sum(self.lost.values())
        if self.outages or self.restarts or self.resent or lost:
            log.log(
                logging.WARNING if lost else logging.INFO,
                "Kafka outages: %d, producer restarts: %d; %d message(s) sent again, %d lost",
                self.outages,
                self.restarts,
                self.resent,
                lost,
            )
        if left:
            raise BrokerError(
                f"{left} message(s) not acknowledged by Kafka at {self._kafka.bootstrap_servers} "
                f"within {timeout_s:.0f}s ({self._suspect or self._fatal or 'broker unreachable'})"
                f"; {lost} lost in all"
            )
        if lost:
            reasons = "; ".join(f"{n} {reason}" for reason, n in self.lost.most_common(3))
            raise BrokerError(f"{lost} message(s) refused by Kafka ({reasons})")


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
    publisher = Publisher(kafka) if out is None else None
    stop = _Stop()
    sent = 0
    last_log = time.monotonic()
    for message in messages:
        if stop.requested:
            break
        if pace:
            wait = (message.emit_at - dt.datetime.now(dt.UTC)).total_seconds()
            while wait > 0 and not stop.requested:
                if publisher is not None:
                    publisher.service(min(wait, 0.25))
                else:
                    time.sleep(min(wait, 0.25))
                wait = (message.emit_at - dt.datetime.now(dt.UTC)).total_seconds()
            if stop.requested:
                break
        if publisher is not None:
            while publisher.full and not stop.requested:
                publisher.service(0.1)  # the broker is away or slow: wait, still checking
            if stop.requested:
                break
            publisher.send(kafka.topic_for(message.family), message.key, message.value)
        else:
            assert out is not None
            out.write(to_jsonl(message))
        sent += 1
        if time.monotonic() - last_log >= 10:
            log.info("published %d messages", sent)
            last_log = time.monotonic()
    if publisher is not None:
        publisher.close()
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
