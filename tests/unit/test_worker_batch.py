"""build_batch: validation into rows and dead letters, in-batch duplicates, next offsets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ingest.contract import EVENT_COLUMNS, to_row, validate
from ingest.network import DATA_DIR, load_network
from ingest.simulator import SimulationSettings, simulate
from ingest.store import (
    Batch,
    BatchContents,
    KnownReferences,
    events_table,
    has_unknown_references,
    stamped,
)
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
    assert len(batch.events) == 1
    (row,) = events_table(batch, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).to_pylist()
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


def test_events_table_holds_the_same_values_as_one_row_per_event() -> None:
    """The column-wise Arrow build (the hot path) against the plain per-event mapping."""
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    settings = SimulationSettings(seed=3, rate=50, time_scale=3600, start=start, max_events=6000)
    batch = Batch()
    for offset, message in enumerate(simulate(settings, load_network(DATA_DIR))):
        batch.add(validate(message.family, message.value), message.family, offset % 3, offset)
    ingested_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    table = events_table(batch, ingested_at)
    assert len({type(e) for e in batch.events}) == 10  # every class of the contract is covered
    expected = []
    for event, (topic, partition, offset) in zip(batch.events, batch.positions, strict=True):
        row = dict(zip(EVENT_COLUMNS, to_row(event), strict=True))
        expected.append(row | {"topic": topic, "partition": partition, "offset": offset,
                               "ingested_at": ingested_at})  # fmt: skip
    assert sorted(table.to_pylist(), key=lambda r: r["offset"]) == expected
    # Built ahead on the validating thread and stamped when stored: the same table.
    assert stamped(batch.prepare().table, ingested_at).equals(table)


def test_unknown_references_are_noticed_in_every_column_that_names_one() -> None:
    """The store runs unknown_references.sql only when this check says so: it must never miss
    an unknown site, SKU (also inside `lines`) or carrier, and a batch of known ones skips it."""
    network = load_network(DATA_DIR)
    known = KnownReferences(
        sites=frozenset(network.sites), skus=frozenset(network.skus),
        carriers=frozenset(network.carriers),
    )  # fmt: skip
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    settings = SimulationSettings(seed=4, rate=50, time_scale=3600, start=start, max_events=3000)
    batch = Batch()
    for offset, message in enumerate(simulate(settings, network)):
        batch.add(validate(message.family, message.value), message.family, 0, offset)
    table = events_table(batch, start)
    assert not has_unknown_references(table, known)
    assert BatchContents.of(table) == BatchContents(
        event_types=frozenset(table["event_type"].to_pylist()), shipments=True, sites=True
    )
    for column in ("origin_site_id", "destination_site_id", "site_id", "sku", "carrier_id"):
        values = table[column].to_pylist()
        row = next(i for i, v in enumerate(values) if v is not None)
        values[row] = "UNKNOWN-1"
        changed = table.set_column(
            table.schema.get_field_index(column), column, pa.array(values, pa.string())
        )
        assert has_unknown_references(changed, known), column
    lines = table["lines"].to_pylist()
    row = next(i for i, v in enumerate(lines) if v)
    lines[row] = [*lines[row][:-1], {"sku": "UNKNOWN-SKU", "quantity": 1}]
    index = table.schema.get_field_index("lines")
    changed = table.set_column(index, "lines", pa.array(lines, table.schema.field(index).type))
    assert has_unknown_references(changed, known)
    positions = table.filter(pc.equal(table["event_type"], "shipment.position"))
    assert BatchContents.of(positions) == BatchContents(
        frozenset({"shipment.position"}), shipments=True, sites=False
    )
