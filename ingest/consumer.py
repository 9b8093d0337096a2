"""Owns the Kafka consumer: assignment from offsets kept in DuckDB, batches, end-of-log tracking.

The worker is the database's only writer, so it reads every partition itself (manual
assignment) instead of sharing them in a consumer group: no join delay, no rebalance that
could hand half the partitions to a dead member, and offsets come from the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from ingest.config import KafkaSettings
from ingest.errors import BrokerError

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]
METADATA_REFRESH_S = 10.0
# librdkafka hands over small chunks fastest (measured: 100-1000 per call beat 50k).
CONSUME_CHUNK = 1000
DOWN_RECHECK_S = 2.0


def position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (never None for data and EOF events)."""
    return msg.topic() or "", msg.partition() or 0, msg.offset() or 0


class EventConsumer:
    def __init__(self, settings: KafkaSettings, group_id: str) -> None:
        self._settings = settings
        self.broker_down: str | None = None
        self._consumer = Consumer(settings.consumer_config(group_id) | {"error_cb": self._on_error})
        self.assigned: set[PartitionKey] = set()
        # Alert acknowledgements come on their own topic and bypass event validation: `consume`
        # keeps them here for the worker to take (`take_acks`).
        self._acks_topic = settings.alert_acks_topic
        self.acks: list[Message] = []
        # Partitions read up to the end of the log (EOF seen, nothing read since).
        self.at_end: dict[PartitionKey, int] = {}
        self._last_refresh = 0.0

    def _on_error(self, error: KafkaError) -> None:
        # Most client errors are transient and retried by librdkafka; these two are worth telling.
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION):
            self.broker_down = error.str()
        if error.fatal():
            log.error("Kafka consumer fatal error: %s", error.str())

    def partitions(self, timeout_s: float = 10.0) -> list[PartitionKey]:
        """Every partition of the event topics and the acks topic, from broker metadata."""
        try:
            meta = self._consumer.list_topics(timeout=timeout_s)
        except KafkaException as e:
            raise BrokerError(
                f"cannot reach Kafka at {self._settings.bootstrap_servers}: {e.args[0].str()}"
            ) from e
        found: list[PartitionKey] = []
        for topic in (*self._settings.topics, self._acks_topic):
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                continue
            found.extend((topic, p) for p in sorted(info.partitions))
        return found

    def assign(
        self, stored: dict[PartitionKey, int], timeout_s: float = 10.0
    ) -> list[PartitionKey]:
        """Assign partitions not yet assigned, starting each at its stored offset or the start."""
        new = [tp for tp in self.partitions(timeout_s) if tp not in self.assigned]
        if new:
            self._consumer.incremental_assign(
                [KafkaTopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING)) for t, p in new]
            )
            self.assigned.update(new)
            for t, p in new:
                log.info("assigned %s[%d] from offset %s", t, p, stored.get((t, p), "beginning"))
        self._last_refresh = time.monotonic()
        return new

    def metadata_check_due(self) -> bool:
        """Time to look at the topics again: every 10 s, every 2 s while Kafka is unreachable."""
        interval = DOWN_RECHECK_S if self.broker_down else METADATA_REFRESH_S
        if time.monotonic() - self._last_refresh < interval:
            return False
        self._last_refresh = time.monotonic()
        return True

    def restart_topic(self, topic: str) -> None:
        """Read every assigned partition of a recreated topic again from its beginning."""
        parts = [KafkaTopicPartition(t, p) for t, p in sorted(self.assigned) if t == topic]
        if not parts:
            return
        self._consumer.incremental_unassign(parts)
        self._consumer.incremental_assign(
            [KafkaTopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in parts]
        )
        for tp in parts:
            self.at_end.pop((tp.topic, tp.partition), None)

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to max_messages data messages: waits up to timeout_s for the first one, then takes
        what the client has already fetched, without waiting for more. So a batch is what
        arrived while the previous one was stored: large when behind, small and immediate for
        a steady stream (librdkafka's consume waits until `num_messages` are there, which would
        hold back a steady stream for the whole timeout). End-of-partition events update
        `at_end` and are dropped."""
        data: list[Message] = []
        waited = False
        while len(data) < max_messages:
            want = min(CONSUME_CHUNK, max_messages - len(data))
            if waited:
                messages = self._consumer.consume(num_messages=want, timeout=0)
            else:
                messages = self._consumer.consume(num_messages=1, timeout=timeout_s)
                want, waited = 1, True
            for msg in messages:
                err = msg.error()
                topic, partition, offset = position(msg)
                key = (topic, partition)
                if err is None:
                    self.at_end.pop(key, None)
                    if topic == self._acks_topic:
                        self.acks.append(msg)
                    else:
                        data.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    self.at_end[key] = offset
                elif err.fatal():
                    raise BrokerError(f"Kafka consumer failed on {key[0]}[{key[1]}]: {err.str()}")
                else:
                    log.warning("Kafka consumer: %s", err.str())
            if len(messages) < want:  # the client holds nothing more: the batch is complete
                break
        if data or self.acks:
            self.broker_down = None
        return data

    def take_acks(self) -> list[Message]:
        """Alert acknowledgements consumed since the last call."""
        acks, self.acks = self.acks, []
        return acks

    def all_at_end(self) -> bool:
        return bool(self.assigned) and self.assigned <= self.at_end.keys()

    def watermarks(self, timeout_s: float = 1.0) -> dict[PartitionKey, int]:
        """High watermarks as the broker reports them (approximate on the local broker)."""
        marks: dict[PartitionKey, int] = {}
        for topic, partition in sorted(self.assigned):
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    KafkaTopicPartition(topic, partition), timeout=timeout_s, cached=False
                )
            except KafkaException:
                continue
            marks[(topic, partition)] = high
        return marks

    def commit(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Tell the group how far we are (monitoring only: the database holds the truth)."""
        tps = [KafkaTopicPartition(t, p, o) for t, p, o in offsets]
        if not tps:
            return
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as e:
            log.debug("offset commit for monitoring failed: %s", e)

    def close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as e:
            log.warning("closing Kafka consumer: %s", e)
