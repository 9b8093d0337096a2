"""build_batch: validation into rows and dead letters, in-batch duplicates, next offsets."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ingest.contract import EVENT_COLUMNS
from ingest.worker import build_batch, dead_letter_headers


@dataclass
class Consumed:
    """The part of a confluent_kafka.Message that build_batch reads (pure unit test)."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = b"k"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key


def position(event_id: str) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "event_type": "shipment.position", "schema_version": 1,
        "occurred_at": "2026-03-02T08:00:00Z", "source": "CAR-1", "shipment_id": "S1",
        "lat": 50.0, "lon": 8.0,
    })  # fmt: skip


def test_rows_dead_letters_duplicates_and_offsets() -> None:
    families = {"ship": "shipments", "inv": "inventory"}
    messages = [
        Consumed("ship", 0, 10, position("e1")),
        Consumed("ship", 0, 11, b"{not json"),
        Consumed("ship", 1, 5, position("e1")),  # same event again: a duplicate
        Consumed("inv", 2, 7, position("e2")),  # a shipment event on the inventory topic
        Consumed("ship", 0, 12, None),
    ]
    batch = build_batch(messages, families)  # type: ignore[arg-type]
    assert batch.messages == 5
    assert len(batch.rows) == 1
    row = dict(zip((*EVENT_COLUMNS, "topic", "partition", "offset"), batch.rows[0], strict=True))
    assert (row["event_id"], row["topic"], row["partition"], row["offset"]) == ("e1", "ship", 0, 10)
    assert batch.in_batch_duplicates == 1
    assert [(d.topic, d.offset) for d in batch.dead_letters] == [
        ("ship", 11),
        ("inv", 7),
        ("ship", 12),
    ]
    assert "not allowed on the inventory topic" in batch.dead_letters[1].reason
    assert batch.next_offsets == {("ship", 0): 13, ("ship", 1): 6, ("inv", 2): 8}
    headers = dict(dead_letter_headers(batch.dead_letters[0]))
    assert headers["dlq.topic"] == b"ship" and headers["dlq.offset"] == b"11"
    assert headers["dlq.partition"] == b"0" and headers["dlq.reason"].startswith(b"invalid JSON")
