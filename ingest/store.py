"""The only writer of the DuckDB database: migrations, views, and one transaction per batch."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ingest.config import DEFAULT_MEMORY_LIMIT
from ingest.contract import EVENT_COLUMNS, Event, to_columns
from ingest.database import (
    connect_file,
    in_list,
    load_extensions,
    number_literal,
    render,
    set_memory_limit,
    split_statements,
    sql_file,
)
from ingest.errors import DatabaseError
from ingest.seen_ids import SeenIds

log = logging.getLogger(__name__)

# Rows appended since the last checkpoint stay in memory: at 512 MB of WAL the worker's peak
# memory while reading a 2M backlog was 1.4 GiB, at 256 MB 1.05 GiB, with the same throughput.
CHECKPOINT_THRESHOLD = "256MB"
# Up to this many ids of a batch are looked up in the primary key's index at once (see
# _insert_new_events); DuckDB scans the whole key column for a longer list of literals.
INDEX_PROBE_MAX_EVENTS = 2000
SEEN_IDS_CHUNK = 1_000_000  # ids hashed per step when building the filter of stored ids
# The hash the filter of stored ids holds: building it and checking a batch must use this one.
ID_HASH = "hash(event_id) AS h"
MIGRATIONS = (
    "001_schema.sql",
    "002_broker_resets.sql",
    "003_alerts.sql",
    "004_asof_window.sql",
    "005_in_full.sql",
    "006_adjustment_reason.sql",
    "007_stock_levels.sql",
    "008_sales_by_hour.sql",
)

_LINE = pa.struct([("sku", pa.string()), ("quantity", pa.int64())])
_TS = pa.timestamp("us", tz="UTC")
_UNSTAMPED = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # replaced by the time of storing
_EVENT_TYPES: dict[str, pa.DataType] = {
    "lat": pa.float64(),
    "lon": pa.float64(),
    "speed_kmh": pa.float64(),
    "heading_deg": pa.float64(),
    "occurred_at": _TS,
    "planned_departure": _TS,
    "planned_arrival": _TS,
    "eta": _TS,
    "lines": pa.list_(_LINE),
    "damaged_quantity": pa.int64(),
    "estimated_delay_minutes": pa.int64(),
    "on_hand": pa.int64(),
    "delta": pa.int64(),
}
EVENT_SCHEMA = pa.schema(
    [(name, _EVENT_TYPES.get(name, pa.string())) for name in EVENT_COLUMNS]
    + [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("ingested_at", _TS),
    ]
)
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("reason", pa.string()),
        ("received_at", _TS),
        ("key", pa.binary()),
        ("value", pa.binary()),
    ]
)

# Reference tables replaced from data/ at start-up: (table, file).
REFERENCE_FILES = (
    ("ref_sites", "sites.csv"),
    ("ref_skus", "skus.csv"),
    ("ref_carriers", "carriers.csv"),
    ("ref_lanes", "lanes.csv"),
)


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes | None


@dataclass
class Batch:
    """What one consume round produced, ready to be stored in one transaction."""

    events: list[Event] = field(default_factory=list)  # valid, first of their id in the batch
    positions: list[tuple[str, int, int]] = field(default_factory=list)  # topic, partition, offset
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    broker_resets: int = 0  # partitions whose offsets went back (the broker lost its data)
    messages: int = 0
    in_batch_duplicates: int = 0
    table: pa.Table | None = None  # the events as rows, built ahead (see prepare)

    def add(self, event: Event, topic: str, partition: int, offset: int) -> None:
        self.events.append(event)
        self.positions.append((topic, partition, offset))

    def prepare(self) -> Batch:
        """Build the events' Arrow table now (on the thread that validated them), so storing
        the batch only stamps the ingest time on it."""
        self.table = events_table(self, _UNSTAMPED)
        return self


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicates: int
    rejected: int
    out_of_order: int
    unknown_references: int


def span_window(span_seconds: float) -> int:
    """The look-back window of as-of queries for a longest shipment span: rounded up to a
    power of two hours, so the macro is rarely redefined."""
    hours = 1
    while hours * 3600 < span_seconds:
        hours *= 2
    return hours * 3600


def partials_asof_macro(span_seconds: float) -> str:
    """shipment_partials_asof(as_of): see shipment_partials_asof.sql."""
    partials = sql_file("shipment_partials.sql")
    window = f"to_seconds({span_window(span_seconds)})"
    merge = sql_file("merge_partials.sql")
    return "CREATE OR REPLACE MACRO shipment_partials_asof(as_of) AS TABLE " + render(
        sql_file("shipment_partials_asof.sql"),
        waiting_merged=render(
            merge,
            partials="SELECT * FROM settled WHERE shipment_id IN (SELECT shipment_id FROM waiting) "
            "UNION ALL BY NAME " + render(partials, events="waiting"),
        ),
        straddling_recomputed=render(
            partials,
            events=f"(SELECT * FROM events WHERE occurred_at <= as_of "
            f"AND occurred_at >= as_of - {window} "
            "AND shipment_id IN (SELECT shipment_id FROM straddling))",
        ),
    )


def _definitions(span_seconds: float) -> list[str]:
    """Macros and views over the store; recreated at every start so upgrades apply."""
    shipments = sql_file("shipments.sql")
    inventory = sql_file("inventory.sql")
    in_transit = sql_file("in_transit.sql")
    tolerance_now = (
        "(SELECT \"value\"::DOUBLE FROM settings WHERE name = 'on_time_tolerance_minutes')"
    )
    counts_asof = (
        "SELECT site_id, sku, max({'ts': occurred_at, 'id': event_id}).ts AS count_ts, "
        "arg_max(on_hand, {'ts': occurred_at, 'id': event_id}) AS on_hand "
        "FROM events WHERE event_type = 'inventory.counted' AND occurred_at <= as_of "
        "GROUP BY site_id, sku"
    )
    movements_asof = (
        "SELECT m.site_id, m.sku, m.ts, m.delta FROM ("
        "SELECT unnest(shipment_movements(plan, departed_at, arrived_first_at, "
        "delivered_first_at, delivered, cancelled_at)) AS m "
        "FROM shipment_partials_asof(as_of))"
    )
    changes_asof = (
        "SELECT site_id, sku, occurred_at AS ts, delta FROM events "
        "WHERE event_type = 'inventory.adjusted' AND occurred_at <= as_of "
        f"UNION ALL {movements_asof}"
    )
    return [
        partials_asof_macro(span_seconds),
        "CREATE OR REPLACE MACRO shipments_asof(as_of, tolerance_min) AS TABLE "
        + render(
            shipments,
            partials="shipment_partials_asof(as_of)",
            t="as_of",
            tolerance="tolerance_min",
            in_full="lines_in_full(plan.lines, delivered.lines)",
        ),
        "CREATE OR REPLACE VIEW shipments_now AS "
        + render(
            shipments,
            partials="shipment_state",
            t="now()",
            tolerance=tolerance_now,
            in_full="in_full",
        ),
        "CREATE OR REPLACE MACRO in_transit_asof(as_of) AS TABLE "
        + render(in_transit, partials="shipment_partials_asof(as_of)"),
        "CREATE OR REPLACE VIEW in_transit_now AS " + render(in_transit, partials="shipment_state"),
        "CREATE OR REPLACE MACRO inventory_asof(as_of) AS TABLE "
        + render(inventory, counts=counts_asof, changes=changes_asof),
        # inventory.sql's rule, folded batch by batch (fold_stock_levels.sql).
        "CREATE OR REPLACE VIEW inventory_now AS "
        "SELECT site_id, sku, on_hand, count_ts AS counted_at FROM stock_levels",
        'CREATE OR REPLACE VIEW kafka_positions AS SELECT topic, "partition", next_offset, '
        "high_watermark, greatest(coalesce(high_watermark, 0) - next_offset, 0) AS lag, "
        "at_end_since, updated_at FROM kafka_offsets",
    ]


def _tables(rows: Sequence[tuple], schema: pa.Schema) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[]] * len(schema)
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


def events_table(batch: Batch, ingested_at: dt.datetime) -> pa.Table:
    """The batch's events as an Arrow table in the events table's layout (row order by event
    class: nothing downstream depends on it)."""
    if not batch.events:
        return EVENT_SCHEMA.empty_table()
    topics, partitions, offsets = zip(*batch.positions, strict=True)
    positions = [
        pa.array(topics, type=pa.string()),
        pa.array(partitions, type=pa.int32()),
        pa.array(offsets, type=pa.int64()),
    ]
    parts = []
    for indexes, columns in to_columns(batch.events):
        n = len(indexes)
        rows = pa.array(indexes, type=pa.int64())
        arrays = [
            pa.nulls(n, f.type) if column is None else pa.array(column, type=f.type)
            for column, f in zip(columns, EVENT_SCHEMA, strict=False)  # the event's columns
        ]
        arrays += [position.take(rows) for position in positions]
        arrays.append(pa.repeat(pa.scalar(ingested_at, type=_TS), n))
        parts.append(pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA))
    return pa.concat_tables(parts)


@dataclass(frozen=True)
class KnownReferences:
    """The reference data's ids, as loaded into the ref_* tables."""

    sites: frozenset[str]
    skus: frozenset[str]
    carriers: frozenset[str]


def _values(column: pa.ChunkedArray | pa.Array) -> set[str]:
    return set(pc.unique(column.drop_null()).to_pylist())


def has_unknown_references(events: pa.Table, known: KnownReferences) -> bool:
    """Whether any event names a site, SKU or carrier absent from the reference data: only
    then does unknown_references.sql run (the usual batch names known ones only)."""
    sites = set().union(
        *(_values(events[c]) for c in ("origin_site_id", "destination_site_id", "site_id"))
    )
    skus = _values(events["sku"]) | _values(
        pc.struct_field(pc.list_flatten(events["lines"]), "sku")
    )
    return (
        not sites <= known.sites
        or not skus <= known.skus
        or not _values(events["carrier_id"]) <= known.carriers
    )


@dataclass(frozen=True)
class BatchContents:
    """What kinds of events a batch holds, to skip the statements it has nothing for."""

    event_types: frozenset[str]
    shipments: bool
    sites: bool

    @classmethod
    def of(cls, events: pa.Table) -> BatchContents:
        return cls(
            event_types=frozenset(_values(events["event_type"])),
            shipments=events["shipment_id"].null_count < events.num_rows,
            sites=events["site_id"].null_count < events.num_rows,
        )


# A change of the stock ledger, as fold_stock_levels.sql takes it: ledger_rows is 1 for a row
# added, -1 for one removed (its delta negated).
LEDGER_CHANGE_SCHEMA = pa.schema(
    [
        ("site_id", pa.string()),
        ("sku", pa.string()),
        ("ts", _TS),
        ("delta", pa.int64()),
        ("ledger_rows", pa.int64()),
    ]
)


def adjustment_changes(events: pa.Table) -> pa.Table:
    """The ledger rows that fold_stock_adjustments.sql adds for a batch's events."""
    adjusted = events.filter(pc.equal(events["event_type"], "inventory.adjusted"))
    return pa.table(
        [
            adjusted["site_id"],
            adjusted["sku"],
            adjusted["occurred_at"],
            adjusted["delta"].cast(pa.int64()),
            pa.repeat(pa.scalar(1, type=pa.int64()), adjusted.num_rows),
        ],
        schema=LEDGER_CHANGE_SCHEMA,
    )


def stamped(events: pa.Table, ingested_at: dt.datetime) -> pa.Table:
    """A prepared events table with its ingest time set."""
    column = events.schema.get_field_index("ingested_at")
    stamps = pa.repeat(pa.scalar(ingested_at, type=_TS), events.num_rows)
    return events.set_column(column, "ingested_at", stamps)


class Store:
    """Owns the read-write connection; every write of the project goes through here."""

    def __init__(
        self,
        path: Path,
        *,
        on_time_tolerance_minutes: float = 60.0,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.path = path
        self.con = connect_file(path, read_only=False)
        self._known: KnownReferences | None = None  # set by load_reference
        self._seen: SeenIds | None = None  # see index_stored_ids
        try:
            set_memory_limit(self.con, memory_limit)
            load_extensions(self.con)
            # DuckDB checkpoints every 16 MB of WAL by default, which cost about 60 % of each
            # commit when ingesting; the worker checkpoints itself when it is idle instead.
            self.con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
            # Scalar macros first: they read no table, and migrations may use them.
            for statement in split_statements(sql_file("macros.sql")):
                self.con.execute(statement)
            self._migrate()
            (span,) = self.con.execute(
                "SELECT \"value\"::DOUBLE FROM settings WHERE name = 'shipment_span_seconds'"
            ).fetchone() or (0.0,)
            self._asof_window = span_window(span)
            for statement in _definitions(span):
                self.con.execute(statement)
            self.con.execute(
                "INSERT OR REPLACE INTO settings VALUES ('on_time_tolerance_minutes', ?)",
                [number_literal(on_time_tolerance_minutes)],
            )
        except duckdb.Error as e:
            self.con.close()
            raise DatabaseError(f"cannot prepare database {path}: {e}") from e

    # -- set-up -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
        )
        done = {v for (v,) in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            self.con.execute("BEGIN")
            for statement in split_statements(sql_file(name)):
                self.con.execute(statement)
            self.con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
            self.con.execute("COMMIT")
            log.info("applied migration %s", name)

    def load_reference(self, data_dir: Path) -> None:
        """Replace the reference tables with the CSV files of the reference network."""
        self.con.execute("BEGIN")
        for table, filename in REFERENCE_FILES:
            path = data_dir / filename
            if not path.exists():
                self.con.execute("ROLLBACK")
                raise DatabaseError(f"reference file {path} is missing")
            self.con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv(?, header = true)",
                [str(path)],
            )
        self.con.execute("COMMIT")
        self._known = KnownReferences(
            sites=self._column_set("SELECT site_id FROM ref_sites"),
            skus=self._column_set("SELECT sku FROM ref_skus"),
            carriers=self._column_set("SELECT carrier_id FROM ref_carriers"),
        )

    def _column_set(self, sql: str) -> frozenset[str]:
        return frozenset(str(v) for (v,) in self.con.execute(sql).fetchall() if v is not None)

    def mark_started(self) -> None:
        self.con.execute("UPDATE ingest_stats SET started_at = now() WHERE id = 1")

    # -- read helpers for the worker --------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        rows = self.con.execute('SELECT topic, "partition", next_offset FROM kafka_offsets')
        return {(t, p): o for t, p, o in rows.fetchall()}

    def record_positions(
        self, at_end: Sequence[tuple[str, int, int]], watermarks: dict[tuple[str, int], int]
    ) -> None:
        """Note partitions found at their end, and the broker's (approximate) high watermarks:
        one transaction (a commit costs milliseconds on a large store, and a caught-up worker
        does this after nearly every batch)."""
        marks = pa.table(
            {
                "topic": pa.array([t for t, _ in watermarks], type=pa.string()),
                "partition": pa.array([p for _, p in watermarks], type=pa.int32()),
                "high": pa.array(list(watermarks.values()), type=pa.int64()),
            }
        )
        ends = pa.table(
            {
                "topic": pa.array([t for t, _, _ in at_end], type=pa.string()),
                "partition": pa.array([p for _, p, _ in at_end], type=pa.int32()),
                "next_offset": pa.array([o for _, _, o in at_end], type=pa.int64()),
            }
        )
        con = self.con
        con.execute("BEGIN")
        try:
            con.register("at_end", ends)
            con.register("watermarks", marks)
            con.execute(
                'INSERT INTO kafka_offsets SELECT topic, "partition", next_offset, NULL, now(), '
                'now() FROM at_end ON CONFLICT (topic, "partition") DO UPDATE SET '
                "at_end_since = coalesce(kafka_offsets.at_end_since, now())"
            )
            con.execute(
                "UPDATE kafka_offsets SET high_watermark = w.high FROM watermarks AS w "
                'WHERE kafka_offsets.topic = w.topic AND kafka_offsets."partition" = w."partition"'
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("at_end")
            con.unregister("watermarks")

    # -- the batch ----------------------------------------------------------------------------

    def apply_batch(
        self,
        batch: Batch,
        now: dt.datetime,
        before_commit: Callable[[], None] | None = None,
    ) -> BatchResult:
        """Store a batch atomically: events, dead letters, derived state, offsets, counters.

        `before_commit` runs once everything is written, before COMMIT; if it raises, nothing
        is stored. The worker waits there for the batch's dead letters to reach the broker."""
        con = self.con
        incoming = events_table(batch, now) if batch.table is None else stamped(batch.table, now)
        dead = _tables(
            [
                (d.topic, d.partition, d.offset, d.reason, now, d.key, d.value)
                for d in batch.dead_letters
            ],
            DEAD_LETTER_SCHEMA,
        )
        try:
            try:
                return self._apply_in_transaction(
                    incoming, dead, batch, now, before_commit, exact=False
                )
            except duckdb.ConstraintException as e:
                # Only if the filter of stored ids missed one (a bug): the key refused the
                # event, nothing was written. Store the batch again with DuckDB checking
                # every id, and build the filter anew.
                log.warning("stored-id filter missed an id (%s): storing the batch exactly", e)
                self._seen = None
                return self._apply_in_transaction(
                    incoming, dead, batch, now, before_commit, exact=True
                )
        finally:
            for name in ("incoming", "dead", "new_events", "apply_arrow", "batch_offsets"):
                con.unregister(name)

    def _apply_in_transaction(
        self,
        incoming: pa.Table,
        dead: pa.Table,
        batch: Batch,
        now: dt.datetime,
        before_commit: Callable[[], None] | None,
        *,
        exact: bool,
    ) -> BatchResult:
        con = self.con
        con.execute("BEGIN")
        try:
            result = self._apply(incoming, dead, batch, now, exact)
            if before_commit is not None:
                before_commit()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return result

    def _apply(
        self, incoming: pa.Table, dead: pa.Table, batch: Batch, now: dt.datetime, exact: bool
    ) -> BatchResult:
        con = self.con
        con.register("incoming", incoming)
        con.register("dead", dead)
        new_events = self._insert_new_events(incoming, exact)
        accepted = new_events.num_rows
        duplicates = incoming.num_rows - accepted + batch.in_batch_duplicates
        con.register("new_events", new_events)

        if dead.num_rows:
            con.execute(
                'INSERT INTO dead_letters SELECT topic, "partition", "offset", reason, '
                'received_at, "key", "value" FROM dead'
            )
        unknown = (
            self._flag_unknown_references(now)
            if self._known is None or has_unknown_references(new_events, self._known)
            else 0
        )
        apply_events = self._events_due(new_events, now)
        # Up to ten statements below read these: each scan of an Arrow table costs 1.5-4 ms
        # more than one of a DuckDB table; the copy 5-30 ms (400 to 20,000 events), and the
        # fold of a batch on the 10M store gains about 12-16 ms net in isolation.
        con.register("apply_arrow", apply_events)
        con.execute("CREATE OR REPLACE TEMP TABLE apply_events AS SELECT * FROM apply_arrow")

        present = BatchContents.of(apply_events)
        out_of_order = self._count_out_of_order() if apply_events.num_rows else 0
        moved = self._fold_shipments() if present.shipments else None
        adjusted = self._fold_inventory(present, apply_events)
        recount = "inventory.counted" in present.event_types
        self._fold_stock_levels([moved, adjusted], recount=recount)
        self._store_offsets(batch.next_offsets, now)
        con.execute("DROP TABLE apply_events")
        last_event_at = pc.max(apply_events["occurred_at"]).as_py()
        con.execute(
            "UPDATE ingest_stats SET messages = messages + ?, accepted = accepted + ?, "
            "duplicates = duplicates + ?, rejected = rejected + ?, "
            "out_of_order = out_of_order + ?, unknown_references = unknown_references + ?, "
            "batches = batches + 1, last_batch_at = ?, broker_resets = broker_resets + ?, "
            "last_event_at = greatest(last_event_at, ?) WHERE id = 1",
            [
                batch.messages,
                accepted,
                duplicates,
                dead.num_rows,
                out_of_order,
                unknown,
                now,
                batch.broker_resets,
                last_event_at,
            ],
        )
        return BatchResult(accepted, duplicates, dead.num_rows, out_of_order, unknown)

    def _insert_new_events(self, incoming: pa.Table, exact: bool) -> pa.Table:
        """Insert the batch's events whose id is not stored yet; returns them. The batch's ids
        are unique (build_batch drops repeats).

        Ids the SeenIds filter has never seen go in with a plain INSERT. The few it flags (the
        duplicates and under 1 % of false alarms) are first looked up in the primary key's
        index with a list of literals, which DuckDB answers in milliseconds. Only when more are
        flagged (a topic read again from its start), or with `exact`, does DuckDB check every
        id (INSERT ... ON CONFLICT DO NOTHING: four times a plain INSERT on a 10M store)."""
        con = self.con
        if incoming.num_rows == 0:
            return incoming
        seen = self._seen_ids()
        hashes = con.execute(f"SELECT {ID_HASH} FROM incoming").fetchnumpy()["h"]
        flagged = incoming["event_id"].filter(pa.array(seen.may_contain(hashes))).to_pylist()
        if exact or len(flagged) > INDEX_PROBE_MAX_EVENTS or any("\x00" in i for i in flagged):
            fresh = self._insert_skipping_stored(incoming)
        else:
            fresh = self._insert_unless_stored(incoming, flagged)
        seen.add(hashes)  # every id of the batch is stored now (new, or already before)
        return fresh

    def _insert_unless_stored(self, incoming: pa.Table, flagged: list[str]) -> pa.Table:
        """Drop the flagged ids found in the key's index, then a plain INSERT of the rest (it
        still checks the key: an id the filter missed fails the batch, never doubles an event)."""
        con = self.con
        fresh = incoming
        if flagged:
            stored = con.execute(
                f"SELECT event_id FROM events WHERE event_id IN {in_list(flagged)}"
            ).to_arrow_table()
            if stored.num_rows:
                fresh = incoming.filter(
                    pc.invert(pc.is_in(incoming["event_id"], value_set=stored["event_id"]))
                )
        con.register("fresh", fresh)
        try:
            con.execute("INSERT INTO events SELECT * FROM fresh")
        finally:
            con.unregister("fresh")
        return fresh

    def _insert_skipping_stored(self, incoming: pa.Table) -> pa.Table:
        """One statement that skips the stored ids; only the keys come back, so an id returned
        is exactly one new event."""
        inserted = self.con.execute(
            "INSERT INTO events SELECT * FROM incoming ON CONFLICT DO NOTHING RETURNING event_id"
        ).to_arrow_table()
        if inserted.num_rows == incoming.num_rows:
            return incoming
        return incoming.filter(pc.is_in(incoming["event_id"], value_set=inserted["event_id"]))

    def index_stored_ids(self) -> None:
        """Build the filter of stored ids now (about 1 s at 10M events), so the first batch
        does not wait for it: the worker calls this before it consumes or serves."""
        self._seen_ids()

    def _seen_ids(self) -> SeenIds:
        """The filter of stored ids: built from the events table on first use, and again,
        twice as large, once it holds more ids than it was sized for."""
        if self._seen is not None and not self._seen.full:
            return self._seen
        started = time.monotonic()
        (count,) = self.con.execute("SELECT count(*) FROM events").fetchone() or (0,)
        seen = SeenIds(expected=2 * int(count) if self._seen is not None else int(count))
        reader = self.con.execute(f"SELECT {ID_HASH} FROM events").to_arrow_reader(SEEN_IDS_CHUNK)
        for chunk in reader:
            seen.add(chunk.column(0).to_numpy())
        log.info(
            "filter of stored event ids built: %d ids in %.1f s",
            seen.count,
            time.monotonic() - started,
        )
        self._seen = seen
        return seen

    def _events_due(self, new_events: pa.Table, now: dt.datetime) -> pa.Table:
        """The events to fold into the live state now: the batch's new events up to `now`, plus
        earlier ones stamped in the future whose time has come. Later ones wait in
        future_events."""
        con = self.con
        future = pc.greater(new_events["occurred_at"], pa.scalar(now, type=_TS))
        if pc.any(future).as_py():
            con.register("later", new_events.filter(future))
            try:
                con.execute("INSERT INTO future_events SELECT * FROM later")
            finally:
                con.unregister("later")
            new_events = new_events.filter(pc.invert(future))
        (matured,) = con.execute(
            "SELECT count(*) FROM future_events WHERE occurred_at <= ?", [now]
        ).fetchone() or (0,)
        if not matured:
            return new_events
        due = con.execute(
            "SELECT * FROM future_events WHERE occurred_at <= ?", [now]
        ).to_arrow_table()
        con.execute("DELETE FROM future_events WHERE occurred_at <= ?", [now])
        return pa.concat_tables([new_events, due.cast(EVENT_SCHEMA)])

    def _count_out_of_order(self) -> int:
        """Events older than the newest event already applied for the same shipment or site."""
        (count,) = self.con.execute(sql_file("count_out_of_order.sql")).fetchone() or (0,)
        return int(count)

    def _fold_shipments(self) -> pa.Table | None:
        """Fold the batch's shipment events into shipment_state and rewrite the stock movements
        of the shipments whose movements changed; returns the ledger's changes, if any."""
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE batch_partials AS "
            + render(sql_file("shipment_partials.sql"), events="apply_events")
        )
        for statement in split_statements(sql_file("merge_shipment_state.sql")):
            con.execute(statement)
        (span,) = con.execute(
            "SELECT max(epoch(last_event_at) - epoch(first_event_at)) FROM merged_state"
        ).fetchone() or (None,)
        if span is not None and span_window(span) > self._asof_window:
            self._define_partials_asof(span)
        create_moved, *rewrite, read_changes = split_statements(sql_file("move_stock.sql"))
        con.execute(create_moved)
        changes = None
        if (con.execute("SELECT count(*) FROM moved").fetchone() or (0,))[0]:
            for statement in rewrite:
                con.execute(statement)
            changes = con.execute(read_changes).to_arrow_table().cast(LEDGER_CHANGE_SCHEMA)
        for table in ("moved", "merged_state", "batch_partials"):
            con.execute(f"DROP TABLE {table}")
        return changes

    def _define_partials_asof(self, span_seconds: float) -> None:
        """A shipment spans longer than the as-of look-back window: widen it (in the batch's
        transaction, so readers see the wider window with the rows that need it)."""
        self.con.execute(partials_asof_macro(span_seconds))
        self.con.execute(
            "INSERT OR REPLACE INTO settings VALUES ('shipment_span_seconds', ?)",
            [number_literal(span_seconds)],
        )
        self._asof_window = span_window(span_seconds)
        log.info("as-of look-back window widened to %d h", self._asof_window // 3600)

    def _fold_inventory(self, present: BatchContents, apply_events: pa.Table) -> pa.Table | None:
        """Fold the inventory events into the stock tables; only the statements the batch
        has events for run (each costs milliseconds even with nothing to do, on a big store).
        Returns the ledger rows added, if any."""
        added = None
        if "inventory.counted" in present.event_types:
            self.con.execute(sql_file("fold_stock_counts.sql"))
        if "inventory.adjusted" in present.event_types:
            self.con.execute(sql_file("fold_stock_adjustments.sql"))
            self.con.execute(sql_file("fold_sales_by_hour.sql"))
            added = adjustment_changes(apply_events)
        if present.sites:
            self.con.execute(sql_file("fold_site_state.sql"))
        return added

    def _fold_stock_levels(self, ledger_changes: list[pa.Table | None], *, recount: bool) -> None:
        """Keep stock_levels equal to inventory.sql's rule over the ledger: the batch's ledger
        changes move it, the keys counted in the batch are set anew (fold_stock_levels.sql)."""
        changes = [t for t in ledger_changes if t is not None and t.num_rows]
        if not changes and not recount:
            return
        table = pa.concat_tables(changes) if changes else LEDGER_CHANGE_SCHEMA.empty_table()
        fold, forget = split_statements(sql_file("fold_stock_levels.sql"))
        self.con.register("ledger_changes", table)
        try:
            self.con.execute(fold)
        finally:
            self.con.unregister("ledger_changes")
        if pc.any(pc.less(table["ledger_rows"], 0)).as_py():
            self.con.execute(forget)

    def _flag_unknown_references(self, now: dt.datetime) -> int:
        """Record references to unknown sites, SKUs or carriers; returns how many."""
        (count,) = self.con.execute(
            'INSERT INTO data_quality_issues SELECT event_id, event_type, field, "value", ? '
            "FROM (" + sql_file("unknown_references.sql") + ")",
            [now],
        ).fetchone() or (0,)
        return int(count)

    def _store_offsets(self, next_offsets: dict[tuple[str, int], int], now: dt.datetime) -> None:
        if not next_offsets:
            return
        (topics, partitions), offsets = zip(*next_offsets, strict=True), next_offsets.values()
        self.con.register(
            "batch_offsets",
            pa.table(
                {
                    "topic": pa.array(topics, type=pa.string()),
                    "partition": pa.array(partitions, type=pa.int32()),
                    "next_offset": pa.array(offsets, type=pa.int64()),
                }
            ),
        )
        self.con.execute(
            'INSERT INTO kafka_offsets SELECT topic, "partition", next_offset, NULL, NULL, ? '
            'FROM batch_offsets ON CONFLICT (topic, "partition") DO UPDATE SET '
            # Plain overwrite: offsets only move back when the broker lost its data, and then
            # the new, lower positions are the truth.
            "next_offset = excluded.next_offset, "
            "at_end_since = NULL, updated_at = excluded.updated_at",
            [now],
        )

    def fold_due_future_events(self, now: dt.datetime) -> bool:
        """Fold events whose time has come while no messages arrive; True if there were any."""
        (due,) = self.con.execute(
            "SELECT count(*) FROM future_events WHERE occurred_at <= ?", [now]
        ).fetchone() or (0,)
        if due:
            self.apply_batch(Batch(), now)
        return bool(due)

    def topic_ids(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT topic, topic_id FROM kafka_topics").fetchall())

    def record_topic_id(self, topic: str, topic_id: str) -> None:
        self.con.execute(
            "INSERT INTO kafka_topics VALUES (?, ?, now()) ON CONFLICT (topic) DO UPDATE SET "
            "topic_id = excluded.topic_id, seen_at = excluded.seen_at",
            [topic, topic_id],
        )

    def reset_topic(self, topic: str, topic_id: str) -> int:
        """The topic was recreated: forget its positions (events and state stay); returns the
        number of partitions reset."""
        self.con.execute("BEGIN")
        (partitions,) = self.con.execute(
            "SELECT count(*) FROM kafka_offsets WHERE topic = ?", [topic]
        ).fetchone() or (0,)
        self.con.execute("DELETE FROM kafka_offsets WHERE topic = ?", [topic])
        self.con.execute(
            "UPDATE ingest_stats SET broker_resets = broker_resets + ? WHERE id = 1",
            [max(int(partitions), 1)],
        )
        self.record_topic_id(topic, topic_id)
        self.con.execute("COMMIT")
        return int(partitions)

    def record_rate(self, events_per_s: float) -> None:
        self.con.execute("UPDATE ingest_stats SET events_per_s = ? WHERE id = 1", [events_per_s])

    def checkpoint(self) -> bool:
        """Fold the WAL into the file; False (try again later) while another connection to the
        database holds a write transaction (seen once in a worker serving readers over Quack
        while its alert rules read on their own cursor)."""
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.TransactionException as e:
            log.debug("checkpoint postponed: %s", e)
            return False
        return True

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error as e:  # closing must not hide the error that led here
            log.warning("closing database %s: %s", self.path, e)

    # -- alerts: written for the alert engine (ingest/alerts.py) --------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the store, for reads on another thread (a DuckDB
        connection must not be shared between threads); the caller closes it."""
        return self.con.cursor()

    @staticmethod
    def alert_conditions(params: dict[str, Any], cursor: duckdb.DuckDBPyConnection) -> pa.Table:
        """The alert rules' conditions that hold now (alert_conditions.sql), read on `cursor`
        (from `cursor()`), so any thread may call it."""
        return cursor.execute(_alert_conditions_sql(), params).to_arrow_table()

    def open_alerts(self) -> list[dict[str, Any]]:
        return self._alert_rows("SELECT * FROM alerts WHERE state = 'open'", [])

    def alerts_by_id(self, alert_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not alert_ids:
            return []
        return self._alert_rows(
            "SELECT * FROM alerts WHERE list_contains(?, alert_id)", [list(alert_ids)]
        )

    def _alert_rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        result = self.con.execute(sql, params)
        columns = [d[0] for d in result.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]

    def store_alert_events(
        self,
        alerts: Sequence[dict[str, Any]],
        events: Sequence[tuple[str, str, str, dt.datetime, str]],
        now: dt.datetime,
        dead_letters: Sequence[DeadLetter] = (),
        next_offsets: dict[tuple[str, int], int] | None = None,
    ) -> None:
        """In one transaction: the alerts' new states (one row per alert_id, the last wins),
        their events (event_id, event_type, alert_id, occurred_at, payload JSON) still to
        publish, and for acknowledgements the rejected messages and the acks topic's offsets."""
        latest = {row["alert_id"]: row for row in alerts}
        rows = pa.Table.from_pylist(list(latest.values()), schema=ALERT_ROW_SCHEMA)
        history = pa.Table.from_pylist(
            [dict(zip(ALERT_EVENT_SCHEMA.names, event, strict=True)) for event in events],
            schema=ALERT_EVENT_SCHEMA,
        )
        dead = _tables(
            [(d.topic, d.partition, d.offset, d.reason, now, d.key, d.value) for d in dead_letters],
            DEAD_LETTER_SCHEMA,
        )
        con = self.con
        con.execute("BEGIN")
        try:
            con.register("alert_rows", rows)
            con.register("alert_events", history)
            con.register("alert_dead", dead)
            con.execute("INSERT OR REPLACE INTO alerts BY NAME SELECT * FROM alert_rows")
            con.execute(
                "INSERT INTO alert_history SELECT event_id, event_type, alert_id, occurred_at, "
                "payload::JSON, NULL FROM alert_events"
            )
            con.execute("INSERT INTO dead_letters SELECT * FROM alert_dead")
            self._store_offsets(next_offsets or {}, now)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            for name in ("alert_rows", "alert_events", "alert_dead"):
                con.unregister(name)

    def unpublished_alert_events(self) -> list[tuple[str, str, str]]:
        """(event_id, alert_id, payload) of alert events the broker has not confirmed yet."""
        rows = self.con.execute(
            "SELECT event_id, alert_id, payload::VARCHAR FROM alert_history "
            "WHERE published_at IS NULL ORDER BY occurred_at, event_id"
        ).fetchall()
        return [(str(e), str(a), str(p)) for e, a, p in rows]

    def mark_alert_events_published(self, event_ids: Sequence[str], now: dt.datetime) -> None:
        # Literals reach the primary key's index (in_list); a bound list (list_contains)
        # scanned the whole history every second.
        for start in range(0, len(event_ids), INDEX_PROBE_MAX_EVENTS):
            chunk = event_ids[start : start + INDEX_PROBE_MAX_EVENTS]
            self.con.execute(
                f"UPDATE alert_history SET published_at = ? WHERE event_id IN {in_list(chunk)}",
                [now],
            )

    def record_alert_delivery(self, url: str | None, counters: dict[str, Any]) -> None:
        """The webhook's counters (queued, delivered, failed, dropped, last_error, ...)."""
        self.con.execute(
            "UPDATE alert_delivery SET url = ?, queued = ?, delivered = ?, failed = ?, "
            "dropped = ?, last_error = ?, last_error_at = ?, last_delivered_at = ?, "
            "updated_at = now() WHERE id = 1",
            [
                url,
                counters["queued"],
                counters["delivered"],
                counters["failed"],
                counters["dropped"],
                counters["last_error"],
                counters["last_error_at"],
                counters["last_delivered_at"],
            ],
        )


ALERT_ROW_SCHEMA = pa.schema(
    [
        *((name, pa.string()) for name in (
            "alert_id", "rule", "severity", "subject_type", "subject_id", "shipment_id",
            "site_id", "sku", "carrier_id", "origin_site_id", "destination_site_id", "message",
            "state",
        )),
        ("opened_at", _TS),
        ("updated_at", _TS),
        ("resolved_at", _TS),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("revision", pa.int32()),
        ("acked_by", pa.string()),
        ("acked_at", _TS),
        ("ack_note", pa.string()),
        ("detail", pa.string()),
    ]
)  # fmt: skip
ALERT_EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("alert_id", pa.string()),
        ("occurred_at", _TS),
        ("payload", pa.string()),
    ]
)
DISTRIBUTORS_SQL = "SELECT site_id FROM ref_sites WHERE kind = 'distributor'"


@functools.cache
def _alert_conditions_sql() -> str:
    """alert_conditions.sql with the dashboard's shared definitions filled in."""
    return render(
        sql_file("alert_conditions.sql"),
        delivery_status=render(sql_file("delivery_status.sql"), t="$now"),
        days_of_supply=render(
            sql_file("days_of_supply.sql"),
            distributors=DISTRIBUTORS_SQL,
            t="$now",
            since="$low_days_of_supply_since",
            window_s="$low_days_of_supply_window_s",
        ),
    )
