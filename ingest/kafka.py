"""Thin wrappers over confluent-kafka: topic set-up and a producer with delivery accounting."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.config import KafkaSettings
from ingest.errors import BrokerError

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def ensure_topics(
    settings: KafkaSettings,
    topics: Sequence[str],
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 10.0,
) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    admin = AdminClient(settings.admin_config())
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as e:
        raise BrokerError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {e.args[0].str()}; "
            "is the broker running (`tiretrack broker`)?"
        ) from e
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in missing],
        operation_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {topic}: {e.args[0].str()}") from e
        except TimeoutError as e:
            raise BrokerError(f"cannot create topic {topic}: no answer in {timeout_s:g}s") from e


def topic_ids(
    settings: KafkaSettings, topics: Sequence[str], timeout_s: float = 5.0
) -> dict[str, str]:
    """Each existing topic's id: a new id under an old name means the topic was recreated
    (and its offsets start again from zero)."""
    admin = AdminClient(settings.admin_config())
    futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout_s)
    ids: dict[str, str] = {}
    for topic, future in futures.items():
        try:
            ids[topic] = str(future.result(timeout=timeout_s).topic_id)
        except KafkaException as e:
            if e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise BrokerError(f"cannot describe topic {topic}: {e.args[0].str()}") from e
        except TimeoutError as e:
            raise BrokerError(f"cannot describe topic {topic}: no answer in {timeout_s:g}s") from e
    return ids


class _DebugLog:
    """librdkafka's own log lines (its `logger` setting), kept at DEBUG: for callers that
    report client errors themselves instead of letting the library repeat them on stderr."""

    def log(self, _level: int, msg: str, *args: object) -> None:
        log.debug(msg, *args)


class EventProducer:
    """Idempotent producer; counts failed deliveries instead of losing them silently."""

    def __init__(
        self,
        settings: KafkaSettings,
        on_error: Callable[[KafkaError], None] | None = None,
    ) -> None:
        """`on_error`: the caller reports client errors itself; each one is passed to it, and
        librdkafka's own log lines go to DEBUG. Without it, fatal and all-brokers-down errors
        are logged as warnings."""
        self._settings = settings
        self._caller_on_error = on_error
        conf = settings.producer_config() | {"error_cb": self._on_error}
        if on_error is not None:
            conf["logger"] = _DebugLog()
        self._producer = Producer(conf)
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.last_error = error.str()
            if self._caller_on_error is None:
                log.warning("Kafka producer: %s", error.str())
        if self._caller_on_error is not None:
            self._caller_on_error(error)

    def _on_delivery(self, error: KafkaError | None, _msg: object) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = error.str()

    def _report(
        self,
        callback: Callable[[KafkaError | None, Message], None],
        error: KafkaError | None,
        msg: Message,
    ) -> None:
        self._on_delivery(error, msg)
        callback(error, msg)

    def send(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Queue one message; `on_delivery(error, msg)` is called from a later send/poll/flush."""
        report = (
            self._on_delivery
            if on_delivery is None
            else functools.partial(self._report, on_delivery)
        )
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=report
                )
                break
            except BufferError:
                # Local queue full: let deliveries drain, then retry this message.
                self._producer.poll(0.05)
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports, waiting up to `timeout_s` for one (by default not at all)."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise BrokerError(
                f"{remaining} message(s) not delivered to {self._settings.bootstrap_servers} "
                f"within {timeout_s:.0f}s ({self.last_error or 'broker unreachable'})"
            )
        if self.failed:
            raise BrokerError(f"{self.failed} message(s) failed delivery: {self.last_error}")
