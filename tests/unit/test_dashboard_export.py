"""The Export page under AppTest: the bytes its download buttons serve equal what
`export_snapshot` (the function behind `tiretrack export`) writes for the same as-of, filters and
format; the manifest is shown and bundled; filters come from the sidebar and column whitelists."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from ingest.export import export_snapshot
from ingest.network import load_network
from ingest.readers import open_reader
from tests.apptest import assert_clean
from tests.browser.dashboard_db import TOLERANCE_MINUTES, DashboardDb, build_dashboard_db

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
EXPORT_PAGE = "app_pages/export.py"
NO_AUTH = {
    "tiretrack": {"test": True}
}  # secrets without [auth]: the open demo, whatever is on disk


class RecordingMediaStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media store, remembering every file a download button serves."""

    served: dict[str, bytes] = {}

    def load_and_get_id(self, path_or_data: str | bytes, *args: Any, **kwargs: Any) -> str:
        file_id = super().load_and_get_id(path_or_data, *args, **kwargs)
        self.served[file_id] = self.get_file(file_id).content
        return file_id


@pytest.fixture(scope="module")
def network_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(tmp_path_factory.mktemp("export") / "network.duckdb")


@pytest.fixture
def export_page(
    network_db: DashboardDb, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., AppTest]]:
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", RecordingMediaStorage)

    def run(**query: Any) -> AppTest:
        monkeypatch.setenv("TIRETRACK_DB", str(network_db.path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets = NO_AUTH
        at.query_params.update(query)
        at.run()
        at.switch_page(EXPORT_PAGE).run()
        assert_clean(at)
        return at

    yield run


def downloaded(at: AppTest, key: str) -> bytes:
    """The bytes the download button `key` hands to the browser."""
    url = at.download_button(key=key).proto.url
    return RecordingMediaStorage.served[url.rsplit("/", 1)[1].split(".")[0]]


def set_as_of(at: AppTest, as_of: dt.datetime) -> AppTest:
    at.toggle(key="export_now").set_value(False).run()
    at.date_input(key="export_date").set_value(as_of.date())
    at.time_input(key="export_time").set_value(as_of.time())
    return at.run()


def prepare(at: AppTest) -> AppTest:
    at.button(key="export_prepare").click().run()
    assert_clean(at)
    return at


def reference(
    db: DashboardDb, tmp_path: Path, dataset: str, fmt: str, as_of: dt.datetime | None, **kw: Any
) -> tuple[bytes, dict[str, Any]]:
    """What `tiretrack export` writes for these arguments: (file bytes, manifest)."""
    out = tmp_path / f"reference.{fmt}"
    reader = open_reader(db.path)
    try:
        result = export_snapshot(reader, dataset, fmt=fmt, out=out, as_of=as_of, **kw)
    finally:
        reader.close()
    return out.read_bytes(), json.loads(result.manifest_path.read_text(encoding="utf-8"))


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def past(db: DashboardDb, minutes: int) -> dt.datetime:
    return (db.built_at - dt.timedelta(minutes=minutes)).replace(second=0, microsecond=0)


def test_csv_as_of_a_past_time_equals_tiretrack_export(
    export_page, network_db: DashboardDb, tmp_path: Path
) -> None:
    as_of = past(network_db, 6)
    at = prepare(set_as_of(export_page(), as_of))
    data = downloaded(at, "export_download_file")
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    expected, expected_manifest = reference(
        network_db, tmp_path, "shipments", "csv", as_of, tolerance_minutes=TOLERANCE_MINUTES
    )
    rows = csv_rows(data)
    assert rows == csv_rows(expected) and len(rows) > 0
    assert data == expected, "byte for byte"
    for key in ("dataset", "as_of", "offsets", "rows", "filters", "query", "format"):
        assert manifest[key] == expected_manifest[key], key
    assert manifest["as_of"] == as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert manifest["on_time_tolerance_minutes"] == TOLERANCE_MINUTES
    # The as-of matters: the same export now has other rows.
    now_rows = csv_rows(reference(network_db, tmp_path, "shipments", "csv", None)[0])
    assert now_rows != rows
    # The page shows the manifest and the command that writes the same file.
    codes = [c.value for c in at.code]
    assert manifest["query"] in codes
    command = next(c for c in codes if c.startswith("tiretrack export"))
    assert f"--as-of {manifest['as_of']}" in command
    assert "--on-time-tolerance 1 " in command and "--format csv" in command
    assert at.download_button(key="export_download_file").proto.label == "CSV file"


def test_as_of_now_is_reproducible_from_its_manifest(
    export_page, network_db: DashboardDb, tmp_path: Path
) -> None:
    before = dt.datetime.now(dt.UTC)
    at = prepare(export_page())
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    as_of = dt.datetime.fromisoformat(manifest["as_of"])
    assert before <= as_of <= dt.datetime.now(dt.UTC)
    assert manifest["as_of_requested"] is None, "as `tiretrack export` without --as-of"
    expected, _ = reference(
        network_db, tmp_path, "shipments", "csv", as_of, tolerance_minutes=TOLERANCE_MINUTES
    )
    assert downloaded(at, "export_download_file") == expected


def test_zip_bundles_the_file_and_its_manifest(export_page) -> None:
    at = prepare(export_page())
    bundle = zipfile.ZipFile(io.BytesIO(downloaded(at, "export_download_zip")))
    names = bundle.namelist()
    assert len(names) == 2 and names[1] == names[0] + ".manifest.json"
    assert names[0].startswith("tiretrack-shipments-") and names[0].endswith(".csv")
    assert bundle.read(names[0]) == downloaded(at, "export_download_file")
    assert bundle.read(names[1]) == downloaded(at, "export_download_manifest")


def test_sidebar_filters_apply_where_they_can(
    export_page, network_db: DashboardDb, tmp_path: Path
) -> None:
    carrier = sorted({r["carrier_id"] for r in network_db.shipments() if r["carrier_id"]})[0]
    as_of = past(network_db, 2)
    at = prepare(set_as_of(export_page(carrier=carrier, mode="road", status="late"), as_of))
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    assert manifest["filters"] == {"carrier_id": [carrier], "mode": ["road"]}
    expected, _ = reference(
        network_db,
        tmp_path,
        "shipments",
        "csv",
        as_of,
        tolerance_minutes=TOLERANCE_MINUTES,
        filters={"carrier_id": [carrier], "mode": ["road"]},
    )
    rows = csv_rows(downloaded(at, "export_download_file"))
    assert rows == csv_rows(expected) and rows
    assert {(r["carrier_id"], r["mode"]) for r in rows} == {(carrier, "road")}
    assert any("do not apply" in c.value and "status" in c.value for c in at.caption)
    command = next(c.value for c in at.code if c.value.startswith("tiretrack export"))
    assert f"--filter carrier_id={carrier}" in command and "--filter mode=road" in command


def test_inventory_by_region_and_sku(export_page, network_db: DashboardDb, tmp_path: Path) -> None:
    network = load_network()
    region = sorted({s.region for s in network.sites.values()})[0]
    sites = sorted(s.site_id for s in network.sites.values() if s.region == region)
    at = export_page(region=region)
    at.selectbox(key="export_dataset").set_value("inventory").run()
    sku_choices = at.multiselect(key="export_inventory_sku").options
    assert len(sku_choices) == len(network.skus), "the whitelist is the reference SKUs"
    sku = sorted(network.skus)[0]
    at.multiselect(key="export_inventory_sku").set_value([sku]).run()
    as_of = past(network_db, 1)
    at = prepare(set_as_of(at, as_of))
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    assert manifest["filters"] == {"site_id": sites, "sku": [sku]}
    expected, _ = reference(
        network_db, tmp_path, "inventory", "csv", as_of, filters={"site_id": sites, "sku": [sku]}
    )
    assert downloaded(at, "export_download_file") == expected
    assert {r["site_id"] for r in csv_rows(expected)} <= set(sites)


def test_filters_that_exclude_each_other_export_nothing(export_page, network_db) -> None:
    carriers = sorted(load_network().carriers)
    at = export_page(carrier=carriers[0])
    at.multiselect(key="export_shipments_carrier_id").set_value([carriers[1]]).run()
    assert any("exclude each other" in w.value for w in at.warning)
    assert "export_prepare" not in [b.key for b in at.button], "nothing to prepare"


def test_parquet_keeps_types_and_rows(export_page, network_db: DashboardDb, tmp_path: Path) -> None:
    as_of = past(network_db, 3)
    at = export_page()
    at.segmented_control(key="export_format").set_value("parquet").run()
    at = prepare(set_as_of(at, as_of))
    table = pq.read_table(io.BytesIO(downloaded(at, "export_download_file")))
    expected, manifest = reference(
        network_db, tmp_path, "shipments", "parquet", as_of, tolerance_minutes=TOLERANCE_MINUTES
    )
    assert table.equals(pq.read_table(io.BytesIO(expected)))
    assert table.num_rows == manifest["rows"] > 0
    assert str(table.schema.field("is_late").type) == "bool"


def test_excel_download_is_a_workbook(export_page, network_db: DashboardDb) -> None:
    at = export_page()
    at.segmented_control(key="export_format").set_value("xlsx").run()
    at = prepare(at)
    data = downloaded(at, "export_download_file")
    assert data[:2] == b"PK" and b"xl/worksheets/" in data
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    assert manifest["format"] == "xlsx" and manifest["rows"] > 0


def test_dead_letters_ignore_the_as_of(
    export_page, network_db: DashboardDb, tmp_path: Path
) -> None:
    at = export_page()
    at.selectbox(key="export_dataset").set_value("dead-letters").run()
    assert not at.toggle, "no as-of for dead letters"
    at = prepare(at)
    expected, manifest = reference(network_db, tmp_path, "dead-letters", "csv", None)
    assert downloaded(at, "export_download_file") == expected
    assert manifest["rows"] == network_db.rejected > 0


def test_changed_choices_hide_the_old_download(export_page) -> None:
    at = prepare(export_page())
    assert at.download_button
    at.selectbox(key="export_dataset").set_value("in-transit").run()
    assert not at.download_button
    assert any("press Prepare export again" in i.value for i in at.info)
    at.selectbox(key="export_dataset").set_value("shipments").run()
    assert at.download_button, "back to the prepared choices"


def test_shows_how_to_attach_without_any_token(export_page, network_db: DashboardDb) -> None:
    at = prepare(export_page())
    codes = [c.value for c in at.code]
    assert f"tiretrack shell --db {network_db.path}" in codes
    attach = next(c for c in codes if "ATTACH" in c)
    assert "READ_ONLY" in attach, "no worker serves this file: attach it read-only"
    assert "TOKEN" not in attach


def test_site_and_tire_filters_map_to_dataset_columns(export_page, network_db) -> None:
    network = load_network()
    at = export_page(plant="PLT-DE-HAN", segment="truck")
    at = prepare(at)  # shipments: plant is the origin; shipments have no SKU column
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    assert manifest["filters"] == {"origin_site_id": ["PLT-DE-HAN"]}
    assert any("do not apply" in c.value and "segment" in c.value for c in at.caption)
    at.selectbox(key="export_dataset").set_value("inventory").run()
    at = prepare(at)  # stock: the plant narrows the plants; the segment its SKUs
    manifest = json.loads(downloaded(at, "export_download_manifest"))
    other_plants = {s.site_id for s in network.sites.values() if s.kind == "plant"} - {"PLT-DE-HAN"}
    assert manifest["filters"] == {
        "site_id": sorted(set(network.sites) - other_plants),
        "sku": sorted(k.sku for k in network.skus.values() if k.segment == "truck"),
    }
    assert not any("do not apply" in c.value for c in at.caption)
