"""Exports against CSV injection: text that a spreadsheet would run as a formula gets a leading
quote in CSV and Excel (not in Parquet, not in numbers), `--raw-text` turns it off, control
characters survive in Excel files; real DuckDB, real files read back, the CLI and the dashboard's
Export page."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import streamlit.testing.v1.app_test as app_test_module
from click.testing import CliRunner
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from ingest.cli import cli
from ingest.export import export_snapshot, write_table
from ingest.readers import open_reader
from ingest.store import Store
from ingest.worker import build_batch
from tests.apptest import assert_clean

REPO = Path(__file__).resolve().parents[2]
SHIPMENTS_TOPIC = "shipment-events"
INVENTORY_TOPIC = "inventory-events"
AS_OF = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)

# Shipment ids as producers might send them, and what a spreadsheet-safe export must hold.
DANGEROUS = [
    '=HYPERLINK("http://evil.example","x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
]
HARMLESS = ["SHP-1", "x-=y", " =1", "é=1", "\x1b[31mred", "a\x00b", "_x0041_ literal"]
EARLY_SHIPMENT = DANGEROUS[0]  # arrives 30 min early: delay_minutes is the number -30
DEAD_VALUES = [b"=cmd|' /C calc'!A0", b"\xf8\x01{ not json", b"@SUM(1)"]


@dataclass
class Consumed:
    """The part of a confluent_kafka.Message that build_batch reads."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"


def _event(event_id: str, event_type: str, at: str, **fields: Any) -> bytes:
    envelope = {"event_id": event_id, "event_type": event_type, "schema_version": 1}
    return orjson.dumps({**envelope, "occurred_at": at, "source": "=SOURCE()", **fields})


def _messages() -> list[Consumed]:
    shipments = [
        _event(
            f"c{i}",
            "shipment.created",
            "2026-03-02T05:00:00Z",
            shipment_id=shipment_id,
            origin_site_id="+1+1",
            destination_site_id="-2+3",
            carrier_id="@SUM(A1:A2)",
            mode="road",
            planned_departure="2026-03-02T06:00:00Z",
            planned_arrival="2026-03-02T10:00:00Z",
            lines=[{"sku": "=SKU", "quantity": 5}],
        )
        for i, shipment_id in enumerate(DANGEROUS + HARMLESS)
    ]
    shipments.append(
        _event("a1", "shipment.arrived", "2026-03-02T09:30:00Z", shipment_id=EARLY_SHIPMENT)
    )
    inventory = [
        _event(
            "adj1",
            "inventory.adjusted",
            "2026-03-02T07:00:00Z",
            site_id="@site",
            sku="=SKU",
            delta=-7,
            reason="sold",
        )
    ]
    consumed = [Consumed(SHIPMENTS_TOPIC, 0, i, v) for i, v in enumerate(shipments)]
    consumed += [Consumed(INVENTORY_TOPIC, 0, i, v) for i, v in enumerate(inventory)]
    start = len(inventory)
    consumed += [Consumed(INVENTORY_TOPIC, 0, start + i, v) for i, v in enumerate(DEAD_VALUES)]
    return consumed


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("formula") / "formula.duckdb"
    store = Store(path)
    try:
        families = {SHIPMENTS_TOPIC: "shipments", INVENTORY_TOPIC: "inventory"}
        batch = build_batch(_messages(), families)  # type: ignore[arg-type]
        assert len(batch.dead_letters) == len(DEAD_VALUES)
        store.apply_batch(batch, AS_OF)
    finally:
        store.close()
    return path


def export(db: Path, tmp: Path, dataset: str, fmt: str, **kw: Any) -> tuple[Path, dict]:
    out = tmp / f"{dataset}-{fmt}-{kw.get('raw_text', False)}.{fmt}"
    reader = open_reader(db)
    try:
        as_of = None if dataset == "dead-letters" else AS_OF
        result = export_snapshot(reader, dataset, fmt=fmt, out=out, as_of=as_of, **kw)
    finally:
        reader.close()
    return out, json.loads(result.manifest_path.read_text(encoding="utf-8"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _ooxml_text(text: str) -> str:
    """Decode Excel's `_xHHHH_` escapes in one left-to-right pass, as Excel does."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True)
class Cell:
    kind: str  # the cell's t attribute: inlineStr, s, b, or "" for a number
    text: str | None
    formula: bool


def read_xlsx(path: Path) -> list[dict[str, Cell]]:
    """The first sheet as Excel sees it: the XML must parse, strings are decoded."""
    with zipfile.ZipFile(path) as archive:
        sheet = ET.fromstring(archive.read("xl/worksheets/sheet1.xml"))
        names = archive.namelist()
        shared = (
            ["".join(si.itertext()) for si in ET.fromstring(archive.read("xl/sharedStrings.xml"))]
            if "xl/sharedStrings.xml" in names
            else []
        )
    rows: list[list[tuple[str, Cell]]] = []
    for row in sheet.iter(f"{_NS}row"):
        cells = []
        for c in row.iter(f"{_NS}c"):
            kind = c.get("t", "")
            inline = c.find(f"{_NS}is")
            value = c.find(f"{_NS}v")
            if inline is not None:
                text: str | None = _ooxml_text("".join(inline.itertext()))
            elif kind == "s" and value is not None:
                text = _ooxml_text(shared[int(value.text or 0)])
            else:
                text = None if value is None else value.text
            column = re.sub(r"\d", "", c.get("r", ""))
            cells.append((column, Cell(kind, text, c.find(f"{_NS}f") is not None)))
        rows.append(cells)
    header = {column: cell.text or "" for column, cell in rows[0]}
    return [{header[column]: cell for column, cell in row} for row in rows[1:]]


def quoted(text: str) -> str:
    return "'" + text


def test_csv_quotes_text_that_starts_a_formula(db: Path, tmp_path: Path) -> None:
    out, manifest = export(db, tmp_path, "shipments", "csv")
    rows = {r["shipment_id"]: r for r in read_csv(out)}
    assert set(rows) == {quoted(s) for s in DANGEROUS} | set(HARMLESS)
    for row in rows.values():
        assert (row["origin_site_id"], row["destination_site_id"], row["carrier_id"]) == (
            "'+1+1",
            "'-2+3",
            "'@SUM(A1:A2)",
        )
        assert row["status"] in ("PLANNED", "ARRIVED") and row["mode"] == "road"
        assert row["planned_quantity"] == "5"
    # A negative number is a number: never quoted.
    assert float(rows[quoted(EARLY_SHIPMENT)]["delay_minutes"]) == -30.0
    assert manifest["formula_text_quoted"] is True

    # The early shipment's arrival moved its plan out of the origin and it stays in transit
    # until received; a sale left a negative stock: numbers, never quoted.
    stock = read_csv(export(db, tmp_path, "inventory", "csv")[0])
    assert [(r["site_id"], r["sku"], r["on_hand"]) for r in stock] == [
        ("'+1+1", "'=SKU", "-5"),
        ("'@site", "'=SKU", "-7"),
    ]
    moving = read_csv(export(db, tmp_path, "in-transit", "csv")[0])
    assert [tuple(r.values()) for r in moving] == [("'+1+1", "'-2+3", "'=SKU", "5")]


def test_raw_text_writes_text_exactly(db: Path, tmp_path: Path) -> None:
    out, manifest = export(db, tmp_path, "shipments", "csv", raw_text=True)
    rows = read_csv(out)
    assert {r["shipment_id"] for r in rows} == set(DANGEROUS) | set(HARMLESS)
    assert {r["carrier_id"] for r in rows} == {"@SUM(A1:A2)"}
    assert manifest["formula_text_quoted"] is False


def test_dead_letters_quote_the_value_text_but_keep_base64_exact(db: Path, tmp_path: Path) -> None:
    rows = read_csv(export(db, tmp_path, "dead-letters", "csv")[0])
    assert sorted(base64.b64decode(r["value_base64"], validate=True) for r in rows) == sorted(
        DEAD_VALUES
    )
    by_bytes = {base64.b64decode(r["value_base64"]): r for r in rows}
    assert by_bytes[DEAD_VALUES[0]]["value"] == quoted(DEAD_VALUES[0].decode())
    assert by_bytes[DEAD_VALUES[2]]["value"] == "'@SUM(1)"
    assert by_bytes[DEAD_VALUES[1]]["value_base64"].startswith("+"), "exact base64 stays exact"
    assert all(r["reason"] and not r["reason"].startswith("'") for r in rows)


def test_parquet_is_always_exact(db: Path, tmp_path: Path) -> None:
    out, manifest = export(db, tmp_path, "shipments", "parquet")
    table = pq.read_table(out)
    assert set(table.column("shipment_id").to_pylist()) == set(DANGEROUS) | set(HARMLESS)
    assert set(table.column("carrier_id").to_pylist()) == {"@SUM(A1:A2)"}
    assert manifest["formula_text_quoted"] is False


@pytest.mark.parametrize("raw_text", [False, True])
def test_excel_cells_are_text_quoted_and_readable(db: Path, tmp_path: Path, raw_text: bool) -> None:
    out, _ = export(db, tmp_path, "shipments", "xlsx", raw_text=raw_text)
    rows = read_xlsx(out)
    assert not any(cell.formula for row in rows for cell in row.values()), "no formula cells"
    ids = {row["shipment_id"].text for row in rows}
    expected = set(DANGEROUS) if raw_text else {quoted(s) for s in DANGEROUS}
    # Control characters (an ANSI escape, a NUL, a CR) and a literal `_x0041_` survive.
    assert ids == expected | set(HARMLESS)
    assert {row["shipment_id"].kind for row in rows} <= {"inlineStr", "s", "str"}
    carrier = "@SUM(A1:A2)" if raw_text else "'@SUM(A1:A2)"
    assert {row["carrier_id"].text for row in rows} == {carrier}
    early = next(r for r in rows if (r["shipment_id"].text or "").endswith(EARLY_SHIPMENT))
    assert early["delay_minutes"].kind == "" and float(early["delay_minutes"].text or 0) == -30.0


def test_excel_inventory_keeps_negative_numbers(db: Path, tmp_path: Path) -> None:
    rows = read_xlsx(export(db, tmp_path, "inventory", "xlsx")[0])
    assert [(r["site_id"].text, r["sku"].text, r["on_hand"].text) for r in rows] == [
        ("'+1+1", "'=SKU", "-5"),
        ("'@site", "'=SKU", "-7"),
    ]
    assert {r["on_hand"].kind for r in rows} == {""}, "number cells"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cli_raw_text_option_and_env_var(db: Path, tmp_path: Path, how: str) -> None:
    default_out, raw_out = tmp_path / "default.csv", tmp_path / f"raw-{how}.csv"
    base = ["export", "inventory", "--db", str(db), "--as-of", "2026-03-02T12:00:00Z"]
    result = CliRunner().invoke(cli, [*base, "--out", str(default_out)])
    assert result.exit_code == 0, result.output
    args = [*base, "--out", str(raw_out)] + (["--raw-text"] if how == "flag" else [])
    env = {"TIRETRACK_EXPORT_RAW_TEXT": "1"} if how == "env" else {}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert [r["site_id"] for r in read_csv(default_out)] == ["'+1+1", "'@site"]
    assert [r["site_id"] for r in read_csv(raw_out)] == ["+1+1", "@site"]
    manifest = json.loads(raw_out.with_name(raw_out.name + ".manifest.json").read_text())
    assert manifest["formula_text_quoted"] is False


class RecordingMediaStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media store, remembering every file a download button serves."""

    served: dict[str, bytes] = {}

    def load_and_get_id(self, path_or_data: str | bytes, *args: Any, **kwargs: Any) -> str:
        file_id = super().load_and_get_id(path_or_data, *args, **kwargs)
        self.served[file_id] = self.get_file(file_id).content
        return file_id


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", RecordingMediaStorage)
    yield


def test_dashboard_export_page_downloads_the_quoted_form(
    db: Path, recording: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIRETRACK_DB", str(db))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60)
    at.secrets = {"tiretrack": {"test": True}}  # no users: the open demo
    at.run()
    at.switch_page("app_pages/export.py").run()
    at.toggle(key="export_now").set_value(False).run()
    at.date_input(key="export_date").set_value(AS_OF.date())
    at.time_input(key="export_time").set_value(AS_OF.time())
    at.run()
    at.button(key="export_prepare").click().run()
    assert_clean(at)
    url = at.download_button(key="export_download_file").proto.url
    data = RecordingMediaStorage.served[url.rsplit("/", 1)[1].split(".")[0]]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert {r["shipment_id"] for r in rows} == {quoted(s) for s in DANGEROUS} | set(HARMLESS)
    assert {r["carrier_id"] for r in rows} == {"'@SUM(A1:A2)"}


def test_plain_signed_numbers_stay_as_they_are(tmp_path: Path) -> None:
    """A rejected message whose whole value is `-1` keeps that value: a signed number cannot
    run anything; a sign followed by anything else is quoted."""
    values = ["-1", "+2.5", "-3e4", "-1+1", "+A1", "-", "--1", "12"]
    out = tmp_path / "t.csv"
    write_table(pa.table({"value": values}), "csv", out)
    assert [r["value"] for r in read_csv(out)] == [
        "-1", "+2.5", "-3e4", "'-1+1", "'+A1", "'-", "'--1", "12",
    ]  # fmt: skip
