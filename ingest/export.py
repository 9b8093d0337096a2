"""Snapshots of the derived state, now or as of a past time, to CSV, Parquet or Excel."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ingest.database import connect_memory, load_extensions, number_literal, string_literal
from ingest.database import timestamp_literal as ts_literal
from ingest.errors import ExportError, ReaderError
from ingest.readers import Reader

FORMATS = ("csv", "parquet", "xlsx")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection): in CSV and
# Excel files such text gets a leading single quote, unless raw text is asked for.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SIGNED_NUMBER = r"[+-][0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
# Text that stays exact whatever the format: base64 ([A-Za-z0-9+/=]) cannot hold a function
# call or a DDE payload, and its point is to give the original bytes back.
EXACT_TEXT_COLUMNS = frozenset({"value_base64"})
# Characters an Excel file's XML cannot hold, or (CR) does not keep: written as the OOXML escape
# `_xHHHH_` that Excel decodes, after a literal `_xHHHH_` in the text is escaped as `_x005F_...`.
XLSX_ESCAPED = (
    *(chr(c) for c in range(0x20) if chr(c) not in "\t\n"),
    "\ufffe",
    "\uffff",
)
# The Kafka positions the store has reached, as JSON text: [{topic, partition, next_offset}].
OFFSETS_JSON = (
    "(SELECT to_json(list({'topic': topic, 'partition': \"partition\", "
    "'next_offset': next_offset} ORDER BY topic, \"partition\")) FROM kafka_offsets)::VARCHAR"
)


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: tuple[str, ...]
    order_by: tuple[str, ...]
    as_of_applies: bool = True


SHIPMENT_COLUMNS = (
    "shipment_id", "status", "origin_site_id", "destination_site_id", "carrier_id", "mode",
    "planned_departure", "planned_arrival", "departed_at", "arrived_at", "eta", "last_lat",
    "last_lon", "last_position_at", "delay_minutes", "is_late", "planned_quantity",
    "delivered_quantity",
)  # fmt: skip
DATASETS = {
    "shipments": Dataset("shipments", SHIPMENT_COLUMNS, ("shipment_id",)),
    "inventory": Dataset("inventory", ("site_id", "sku", "on_hand"), ("site_id", "sku")),
    "in-transit": Dataset(
        "in-transit",
        ("origin_site_id", "destination_site_id", "sku", "in_transit"),
        ("origin_site_id", "destination_site_id", "sku"),
    ),
    "dead-letters": Dataset(
        "dead-letters",
        ("topic", "partition", "offset", "reason", "received_at", "value"),
        ("received_at", "topic", "partition", "offset"),
        as_of_applies=False,
    ),
}


def dataset_source(name: str, as_of: dt.datetime, tolerance_minutes: float) -> str:
    """The relation a dataset is read from, evaluated on the worker's side."""
    t = ts_literal(as_of)
    if name == "shipments":
        return f"shipments_asof({t}, {number_literal(tolerance_minutes)})"
    if name == "inventory":
        return f"inventory_asof({t})"
    if name == "in-transit":
        return f"in_transit_asof({t})"
    return "dead_letters"


def snapshot_sql(
    dataset: Dataset, as_of: dt.datetime, tolerance_minutes: float, filters: dict[str, list[str]]
) -> tuple[str, str]:
    """SQL for one snapshot: the query as reported, and the same with the Kafka offsets riding
    along as a column, so rows and offsets come from one consistent read."""
    columns = ", ".join(f'"{c}"' for c in dataset.columns)
    where = []
    for column, values in sorted(filters.items()):
        if column not in dataset.columns:
            raise ExportError(
                f"cannot filter {dataset.name} on {column!r}: choose one of "
                + ", ".join(dataset.columns)
            )
        where.append(f'"{column}" IN ({", ".join(string_literal(v) for v in values)})')
    source = dataset_source(dataset.name, as_of, tolerance_minutes)
    tail = (
        (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY "
        + ", ".join(f'"{c}"' for c in dataset.order_by)
    )
    return (
        f"SELECT {columns} FROM {source}{tail}",
        f"SELECT {columns}, {OFFSETS_JSON} AS __offsets FROM {source}{tail}",
    )


def _offsets_map(raw: str | None) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for entry in json.loads(raw) if raw else []:
        result.setdefault(entry["topic"], {})[str(entry["partition"])] = entry["next_offset"]
    return result


def _dead_letter_values(table: pa.Table) -> pa.Table:
    """Original bytes as text (invalid UTF-8 escaped) plus an exact base64 copy."""
    raw = table.column("value").to_pylist()
    text = [None if v is None else v.decode("utf-8", errors="backslashreplace") for v in raw]
    b64 = [None if v is None else base64.b64encode(v).decode("ascii") for v in raw]
    index = table.schema.get_field_index("value")
    table = table.set_column(index, "value", pa.array(text, type=pa.string()))
    return table.append_column("value_base64", pa.array(b64, type=pa.string()))


def _rfc3339(column: str) -> str:
    """UTC RFC 3339 text, fraction only when the instant has one."""
    c = f'"{column}"'
    return (
        f"CASE WHEN {c} IS NULL THEN NULL WHEN epoch_us({c}) % 1000000 = 0 "
        f"THEN strftime({c}, '%Y-%m-%dT%H:%M:%SZ') "
        f"ELSE rtrim(strftime({c}, '%Y-%m-%dT%H:%M:%S.%f'), '0') || 'Z' END AS {c}"
    )


def _is_text(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def _formula_safe(text: str) -> str:
    """The text with a leading single quote when a spreadsheet would read it as a formula; a
    plain signed number ("-1", a rejected message's whole value) is harmless and stays."""
    prefixes = ", ".join(string_literal(p) for p in FORMULA_PREFIXES)
    return (
        f"CASE WHEN left({text}, 1) IN ({prefixes}) "
        f"AND NOT regexp_full_match({text}, {string_literal(SIGNED_NUMBER)}) "
        f"THEN '''' || {text} ELSE {text} END"
    )


def _xlsx_text(text: str) -> str:
    """Text as an Excel cell can carry it: control characters (an ANSI escape or a NUL in an
    id) would otherwise make the file unreadable or be dropped."""
    escaped = f"regexp_replace({text}, '_(x[0-9A-Fa-f]{{4}}_)', '_x005F_\\1', 'g')"
    for char in XLSX_ESCAPED:
        escaped = f"replace({escaped}, chr({ord(char)}), '_x{ord(char):04X}_')"
    return escaped


def write_table(table: pa.Table, fmt: str, out: Path, *, raw_text: bool = False) -> None:
    """Write with DuckDB: Parquet keeps types and text exactly; CSV and Excel get RFC 3339 UTC
    text for instants and, unless `raw_text`, text that cannot run as a formula."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    con = connect_memory()
    try:
        if fmt == "xlsx":
            load_extensions(con, ("excel",))
        con.register("snapshot", table)
        select = []
        for f in table.schema:
            if pa.types.is_timestamp(f.type) and fmt != "parquet":
                select.append(_rfc3339(f.name))
            elif _is_text(f.type) and fmt != "parquet":
                text = f'"{f.name}"'
                if not raw_text and f.name not in EXACT_TEXT_COLUMNS:
                    text = _formula_safe(text)
                if fmt == "xlsx":
                    text = _xlsx_text(text)
                select.append(f'{text} AS "{f.name}"')
            else:
                select.append(f'"{f.name}"')
        options = {
            "csv": "FORMAT csv, HEADER true",
            "parquet": "FORMAT parquet, COMPRESSION zstd",
            "xlsx": "FORMAT xlsx, HEADER true",
        }[fmt]
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT {', '.join(select)} FROM snapshot) TO {string_literal(str(out))} "
            f"({options})"
        )
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror}") from e
    except Exception as e:
        raise ExportError(f"cannot write {out}: {e}") from e
    finally:
        con.close()


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest_path: Path
    rows: int


def export_snapshot(
    reader: Reader,
    dataset_name: str,
    *,
    fmt: str,
    out: Path,
    as_of: dt.datetime | None = None,
    tolerance_minutes: float = 60.0,
    filters: dict[str, list[str]] | None = None,
    raw_text: bool = False,
) -> ExportResult:
    """Write one dataset's snapshot and `<out>.manifest.json` next to it. CSV and Excel text
    that starts with a formula character gets a leading single quote unless `raw_text`."""
    dataset = DATASETS.get(dataset_name)
    if dataset is None:
        raise ExportError(f"unknown dataset {dataset_name!r}: use one of {', '.join(DATASETS)}")
    filters = filters or {}
    requested_as_of = as_of
    t = as_of or dt.datetime.now(dt.UTC)
    sql, sql_with_offsets = snapshot_sql(dataset, t, tolerance_minutes, filters)
    table = reader.query(sql_with_offsets)
    offsets_raw = table.column("__offsets")[0].as_py() if table.num_rows else _offsets_now(reader)
    table = table.drop_columns(["__offsets"])
    if dataset.name == "dead-letters":
        table = _dead_letter_values(table)
    write_table(table, fmt, out, raw_text=raw_text)
    manifest = {
        "dataset": dataset.name,
        "as_of": None if not dataset.as_of_applies else _iso(t),
        "as_of_requested": None if requested_as_of is None else _iso(requested_as_of),
        "offsets": _offsets_map(offsets_raw),
        "rows": table.num_rows,
        "filters": filters,
        "query": sql,
        "format": fmt,
        # True when text starting with = + - @ tab or CR got a leading single quote.
        "formula_text_quoted": fmt != "parquet" and not raw_text,
        "on_time_tolerance_minutes": tolerance_minutes if dataset.name == "shipments" else None,
        "source": reader.source,
        "created_at": _iso(dt.datetime.now(dt.UTC)),
    }
    manifest_path = out.with_name(out.name + ".manifest.json")
    try:
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise ExportError(f"cannot write {manifest_path}: {e.strerror}") from e
    return ExportResult(out, manifest_path, table.num_rows)


def _offsets_now(reader: Reader) -> str | None:
    try:
        table = reader.query(f"SELECT {OFFSETS_JSON} AS offsets")
    except ReaderError:
        return None
    return table.column(0)[0].as_py() if table.num_rows else None


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_instant(text: str) -> dt.datetime:
    """Parse an --as-of value: RFC 3339 with an offset (a bare date or time is refused)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as e:
        raise ExportError(
            f"--as-of {text!r} is not an RFC 3339 time; write e.g. 2026-03-02T08:00:00Z"
        ) from e
    if value.tzinfo is None:
        raise ExportError(f"--as-of {text!r} has no UTC offset; add Z or +01:00")
    return value
