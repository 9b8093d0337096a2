"""The ingest worker: consume, validate, dead-letter, store exactly once, serve, report progress."""

from __future__ import annotations

import datetime as dt
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

from confluent_kafka import Message

from ingest.alerts import AlertEngine, load_rules, webhook_settings
from ingest.config import DLQ_SUFFIX, IngestSettings, KafkaSettings
from ingest.consumer import EventConsumer, position
from ingest.contract import INVENTORY, SHIPMENTS, Rejected, validate
from ingest.errors import BrokerError
from ingest.kafka import EventProducer, ensure_topics, topic_ids
from ingest.network import DATA_DIR, load_network
from ingest.serve import start_serving, stop_serving
from ingest.store import Batch, DeadLetter, Store

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 30.0
# The storing thread gives up the GIL in every DuckDB statement and needs it back to go on;
# while the validating thread runs Python, CPython hands it back only after the switch
# interval (5 ms by default), about 20 times a batch: 10 ms for a bare BEGIN. At 0.5 ms a BEGIN
# took 2 ms and 1M messages were stored 10 % faster.
GIL_SWITCH_INTERVAL_S = 0.0005
FUTURE_FOLD_INTERVAL_S = 1.0
IDLE_CHECKPOINT_INTERVAL_S = 60.0
WATERMARK_INTERVAL_S = 10.0


def build_batch(messages: Iterable[Message], families: dict[str, str]) -> Batch:
    """Validate a consumed batch: rows for valid events, dead letters for the rest.

    Pure apart from reading the messages. Duplicates inside the batch are dropped here (the
    first by Kafka position wins); duplicates of stored events are found by the store.
    """
    batch = Batch()
    seen: set[str] = set()
    for msg in messages:
        topic, partition, offset = position(msg)
        batch.messages += 1
        key = (topic, partition)
        batch.next_offsets[key] = max(batch.next_offsets.get(key, 0), offset + 1)
        batch.first_offsets[key] = min(batch.first_offsets.get(key, offset), offset)
        value = msg.value()
        try:
            event = validate(families[topic], value)
        except Rejected as e:
            batch.dead_letters.append(
                DeadLetter(topic, partition, offset, e.reason, msg.key(), value)
            )
            continue
        if event.event_id in seen:
            batch.in_batch_duplicates += 1
            continue
        seen.add(event.event_id)
        batch.add(event, topic, partition, offset)
    return batch


def prepared_batch(messages: list[Message], families: dict[str, str]) -> Batch:
    """build_batch plus the events' Arrow table: all the Python work a batch needs before it
    is stored (run on the validating thread)."""
    return build_batch(messages, families).prepare()


def all_topics(kafka: KafkaSettings) -> list[str]:
    """The event topics and their dead-letter topics; the alerts, acks and acks DLQ topics."""
    return [
        *kafka.topics,
        *(t + DLQ_SUFFIX for t in kafka.topics),
        kafka.alerts_topic,
        kafka.alert_acks_topic,
        kafka.alert_acks_topic + DLQ_SUFFIX,
    ]


def detect_resets(
    first_offsets: dict[tuple[str, int], int], stored: dict[tuple[str, int], int]
) -> int:
    """Partitions that handed out offsets below the stored position: the broker lost its data
    (a memory-only broker restarted, or a topic was recreated) and starts again from zero."""
    resets = 0
    for (topic, partition), first in sorted(first_offsets.items()):
        if first < stored.get((topic, partition), 0):
            log.warning(
                "%s[%d] went back from offset %d to %d: the broker lost its data "
                "(restarted?); carrying on with what it has now",
                topic, partition, stored[(topic, partition)], first,
            )  # fmt: skip
            resets += 1
    return resets


def queue_dead_letters(dlq: EventProducer, dead_letters: list[DeadLetter]) -> None:
    """Hand dead letters to the producer for `<topic>.dlq`; `dlq.flush()` waits for them."""
    for d in dead_letters:
        dlq.send(d.topic + DLQ_SUFFIX, d.key, d.value, dead_letter_headers(d))


def send_dead_letters(dlq: EventProducer, dead_letters: list[DeadLetter]) -> None:
    """Dead letters reach `<topic>.dlq` before their batch commits: at least once."""
    queue_dead_letters(dlq, dead_letters)
    if dead_letters:
        dlq.flush()


def dead_letter_headers(d: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    return [
        ("dlq.reason", d.reason.encode()),
        ("dlq.topic", d.topic.encode()),
        ("dlq.partition", str(d.partition).encode()),
        ("dlq.offset", str(d.offset).encode()),
    ]


@dataclass
class Progress:
    """Counters for the one-line progress log."""

    started: float
    last_log: float
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    since_log: int = 0


class Worker:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.stopping = threading.Event()

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        self.stopping.set()

    def run(self) -> Progress:
        """Run until stopped (or, with stop_at_end, until every partition is read to its end)."""
        s = self.settings
        kafka = s.kafka
        families = {kafka.shipments_topic: SHIPMENTS, kafka.inventory_topic: INVENTORY}
        rules = load_rules(s.alert_rules_path, s.alert_time_scale)
        webhook = webhook_settings(s, rules)
        store = Store(
            s.db_path,
            on_time_tolerance_minutes=s.on_time_tolerance_minutes,
            memory_limit=s.memory_limit,
        )
        endpoint = None
        consumer: EventConsumer | None = None
        alerts: AlertEngine | None = None
        try:
            load_network(DATA_DIR)  # reports bad reference data by file and line
            store.load_reference(DATA_DIR)
            store.index_stored_ids()
            store.mark_started()
            if s.serve.enabled:
                endpoint = start_serving(store.con, s.db_path, s.serve)
            if not self._until_kafka_answers(lambda: ensure_topics(kafka, all_topics(kafka))):
                return Progress(time.monotonic(), time.monotonic())
            consumer = EventConsumer(kafka, s.group_id)
            self._check_topics(store, consumer, {})
            consumer.assign(store.stored_offsets())
            alerts = AlertEngine(store, kafka, rules, webhook)
            return self._loop(store, consumer, families, alerts)
        finally:
            if alerts is not None:
                alerts.close()
            if consumer is not None:
                consumer.close()
            if endpoint is not None:
                stop_serving(store.con, s.db_path, endpoint)
            store.checkpoint()
            store.close()

    def _until_kafka_answers(self, attempt: Callable[[], None]) -> bool:
        """Retry with exponential backoff until Kafka answers (False if stopped meanwhile);
        past the startup timeout the last error goes to the user."""
        timeout = self.settings.startup_timeout_s
        deadline = time.monotonic() + timeout if timeout > 0 else None
        delay = 1.0
        while True:
            try:
                attempt()
                return True
            except BrokerError as e:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                log.warning("%s; retrying in %.0f s", e, delay)
            if self.stopping.wait(delay):
                return False
            delay = min(delay * 2, MAX_RETRY_DELAY_S)

    def _check_topics(
        self, store: Store, consumer: EventConsumer, stored: dict[tuple[str, int], int]
    ) -> bool:
        """Compare topic ids with those stored: a recreated topic (the broker lost its data) is
        read again from its start. Returns True when something was reset."""
        kafka = self.settings.kafka
        try:
            current = topic_ids(kafka, kafka.topics, timeout_s=2.0)
            if len(current) < len(kafka.topics):
                # A topic vanished (a broker that lost its data): create it again, empty.
                ensure_topics(kafka, all_topics(kafka))
                current = topic_ids(kafka, kafka.topics, timeout_s=2.0)
        except BrokerError:
            return False
        if consumer.broker_down:
            log.info("Kafka reachable again")
            consumer.broker_down = None
        known = store.topic_ids()
        reset = False
        for topic, topic_id in current.items():
            if topic in known and known[topic] != topic_id:
                log.warning(
                    "topic %s was recreated: the broker lost its data (restarted?); "
                    "reading it again from the start",
                    topic,
                )
                store.reset_topic(topic, topic_id)
                for key in [k for k in stored if k[0] == topic]:
                    del stored[key]
                consumer.restart_topic(topic)
                reset = True
            elif known.get(topic) != topic_id:
                store.record_topic_id(topic, topic_id)
        return reset

    def _loop(
        self,
        store: Store,
        consumer: EventConsumer,
        families: dict[str, str],
        alerts: AlertEngine,
    ) -> Progress:
        # Validation (Python, holding the GIL) runs on a thread of its own, so while the worker
        # catches up the next batch is validated while this one is stored (DuckDB, which
        # releases the GIL). A caught-up worker stores each batch as soon as it is validated.
        validator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        try:
            return self._run_loop(store, consumer, families, alerts, validator)
        finally:
            sys.setswitchinterval(switch_interval)
            validator.shutdown(cancel_futures=True)

    def _run_loop(
        self,
        store: Store,
        consumer: EventConsumer,
        families: dict[str, str],
        alerts: AlertEngine,
        validator: ThreadPoolExecutor,
    ) -> Progress:
        s = self.settings
        now_mono = time.monotonic()
        progress = Progress(started=now_mono, last_log=now_mono)
        stored = store.stored_offsets()
        dlq = EventProducer(s.kafka)
        down_reported = False
        last_fold = last_checkpoint = time.monotonic()
        last_watermarks = -math.inf
        reported_end = False
        # A batch consumed and being validated, not stored yet. Left unstored at a stop, its
        # messages are read again at the next start (the stored offsets are the truth).
        pending: Future[Batch] | None = None
        at_end = False
        while not self.stopping.is_set():
            # With a batch waiting to be stored, take only what has already arrived.
            messages = consumer.consume(
                s.batch_size, 0.0 if pending is not None else s.batch_timeout_s
            )
            current = pending
            pending = None
            if messages:
                pending = validator.submit(prepared_batch, messages, families)
                if current is None and len(messages) < s.batch_size:
                    # Not a full batch: nothing more is waiting, store it now, not next round.
                    current, pending = pending, None
            if current is not None:
                batch = current.result()
                batch.broker_resets = detect_resets(batch.first_offsets, stored)
                # Dead letters reach the broker before their batch commits (at least once):
                # sent now, waited for just before the COMMIT, so the broker's round trip
                # (about 60 ms a batch here) overlaps the batch's writes.
                queue_dead_letters(dlq, batch.dead_letters)
                result = store.apply_batch(
                    batch, dt.datetime.now(dt.UTC), dlq.flush if batch.dead_letters else None
                )
                alerts.record_batch(batch.first_offsets, batch.next_offsets, batch.dead_letters)
                stored.update(batch.next_offsets)
                consumer.commit((t, p, o) for (t, p), o in batch.next_offsets.items())
                progress.messages += batch.messages
                progress.since_log += batch.messages
                progress.accepted += result.accepted
                progress.duplicates += result.duplicates
                progress.rejected += result.rejected
                reported_end = False
            elif pending is None and time.monotonic() - last_fold >= FUTURE_FOLD_INTERVAL_S:
                # Idle: events stamped in the future may have come due meanwhile.
                store.fold_due_future_events(dt.datetime.now(dt.UTC))
                last_fold = time.monotonic()
            # Acknowledgements wait while alert changes are being found or stored.
            acks = consumer.take_acks() if alerts.accepts_acks else []
            if acks:
                # Alert acknowledgements: checked, dead-lettered, stored with their offsets.
                ack_batch = alerts.read_acks(acks)
                send_dead_letters(dlq, ack_batch.dead_letters)
                alerts.apply_acks(ack_batch)
                stored.update(ack_batch.next_offsets)
                consumer.commit((t, p, o) for (t, p), o in ack_batch.next_offsets.items())
            caught_up = pending is None and consumer.all_at_end()
            alerts.tick(stored_batch=current is not None, caught_up=caught_up)
            if caught_up and not reported_end:
                # The watermarks cost a broker round trip per partition: every 10 s is enough
                # for a lag figure that is approximate anyway.
                watermarks_due = time.monotonic() - last_watermarks >= WATERMARK_INTERVAL_S
                store.record_positions(
                    [(t, p, o) for (t, p), o in consumer.at_end.items()],
                    consumer.watermarks() if watermarks_due else {},
                )
                if watermarks_due:
                    last_watermarks = time.monotonic()
                reported_end = True
                if (
                    time.monotonic() - last_checkpoint >= IDLE_CHECKPOINT_INTERVAL_S
                    and store.checkpoint()  # caught up: a good moment to fold the WAL in
                ):
                    last_checkpoint = time.monotonic()
                if s.stop_at_end:
                    log.info("every partition read to its end: stopping (--stop-at-end)")
                    at_end = True
                    break
            if consumer.broker_down and not down_reported:
                log.warning("Kafka unreachable (%s); waiting for it", consumer.broker_down)
            down_reported = bool(consumer.broker_down)
            if consumer.metadata_check_due():
                if self._check_topics(store, consumer, stored):
                    # An idempotent producer cannot continue against a broker that forgot it.
                    dlq = EventProducer(s.kafka)
                    alerts.reset_producer()
                try:
                    consumer.assign(stored, timeout_s=2.0)  # partitions created since start
                except BrokerError as e:
                    log.debug("metadata refresh failed: %s", e)
            now = time.monotonic()
            if now - progress.last_log >= s.progress_interval_s:
                store.record_rate(self._log_line(progress, now))
        alerts.finish(at_end=at_end)
        store.record_rate(self._log_line(progress, time.monotonic()))
        dlq.flush()
        return progress

    def _log_line(self, progress: Progress, now: float) -> float:
        """Log one progress line; returns messages/s since the previous line."""
        rate = progress.since_log / max(now - progress.last_log, 1e-9)
        log.info(
            "ingested %d messages: %d accepted, %d duplicates, %d rejected; %.0f msg/s",
            progress.messages,
            progress.accepted,
            progress.duplicates,
            progress.rejected,
            rate,
        )
        progress.last_log = now
        progress.since_log = 0
        return rate
