"""The shipped reference network is plausible, and broken CSV files are reported precisely."""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ingest.errors import ReferenceDataError
from ingest.network import (
    DATA_DIR,
    MODES,
    SEASONS,
    SEGMENTS,
    SITE_KINDS,
    Network,
    great_circle_km,
    load_network,
)

REGIONS = {
    "DACH",
    "Benelux",
    "France",
    "Iberia",
    "Italy",
    "Nordics",
    "Central Europe",
    "UK & Ireland",
    "South-East Europe",
}


@pytest.fixture(scope="module")
def network() -> Network:
    return load_network()


def test_default_data_dir_is_the_repository_data_folder() -> None:
    assert Path(__file__).resolve().parents[2] / "data" == DATA_DIR
    assert load_network(DATA_DIR).sites.keys() == load_network().sites.keys()


def test_network_size_and_every_kind_present(network: Network) -> None:
    kinds = Counter(site.kind for site in network.sites.values())
    assert set(kinds) == set(SITE_KINDS)
    assert 4 <= kinds["plant"] <= 8
    assert 6 <= kinds["dc"] <= 10
    assert 25 <= kinds["distributor"] <= 40
    assert 30 <= len(network.skus) <= 50
    assert 6 <= len(network.carriers) <= 10
    assert {sku.segment for sku in network.skus.values()} == set(SEGMENTS)
    assert {sku.season for sku in network.skus.values()} == set(SEASONS)
    assert {lane.mode for lane in network.lanes.values()} == set(MODES)


@pytest.mark.parametrize(
    ("file", "id_column"),
    [
        ("sites.csv", "site_id"),
        ("skus.csv", "sku"),
        ("carriers.csv", "carrier_id"),
        ("lanes.csv", "lane_id"),
    ],
)
def test_no_duplicate_ids_in_the_files(file: str, id_column: str) -> None:
    with (DATA_DIR / file).open(encoding="utf-8", newline="") as handle:
        ids = [row[id_column] for row in csv.DictReader(handle)]
    assert len(ids) == len(set(ids)) > 0


def test_site_ids_and_coordinates(network: Network) -> None:
    pattern = {
        "plant": r"PLT-[A-Z]{2}-[A-Z]{3}",
        "dc": r"DC-[A-Z]{2}-[A-Z]{3}",
        "distributor": r"DIS-[A-Z]{2}-[A-Z]{3}-\d{2}",
    }
    for site in network.sites.values():
        assert re.fullmatch(pattern[site.kind], site.site_id), site.site_id
        assert site.site_id.split("-")[1] == site.country
        assert site.region in REGIONS
        assert 35.0 <= site.lat <= 72.0 and -11.0 <= site.lon <= 35.0, site  # Europe
    with (DATA_DIR / "sites.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            assert re.fullmatch(r"-?\d+\.\d{4}", row["lat"]), row
            assert re.fullmatch(r"-?\d+\.\d{4}", row["lon"]), row


def test_skus_look_like_real_tire_sizes(network: Network) -> None:
    season_code = {"summer": "S", "winter": "W", "all_season": "A"}
    for sku in network.skus.values():
        assert sku.sku.startswith(sku.segment[0].upper() + "-")
        assert sku.sku.endswith(f"{sku.load_index}{sku.speed_rating}-{season_code[sku.season]}")
        assert f"{sku.width_mm}/{sku.aspect_ratio} R{sku.rim_inch:g}" in sku.description
        if sku.segment == "truck":
            assert sku.rim_inch == 22.5 and 45 <= sku.weight_kg <= 90
        elif sku.segment == "agricultural":
            assert sku.rim_inch >= 24 and sku.weight_kg >= 60
        else:
            assert 13 <= sku.rim_inch <= 22 and 5 <= sku.weight_kg <= 20


def test_carriers(network: Network) -> None:
    for carrier in network.carriers.values():
        assert carrier.carrier_id.startswith("CAR-")
        assert carrier.modes and set(carrier.modes) <= set(MODES)
        assert 0.5 <= carrier.on_time_bias <= 1.0
    biases = {carrier.on_time_bias for carrier in network.carriers.values()}
    assert len(biases) > 3, "carriers should differ in reliability"


def test_lanes_connect_plants_to_dcs_and_dcs_to_distributors(network: Network) -> None:
    sites = network.sites
    for lane in network.lanes.values():
        kinds = (sites[lane.origin_site_id].kind, sites[lane.destination_site_id].kind)
        assert kinds in {("plant", "dc"), ("dc", "distributor")}, lane
        assert lane.mode in network.carriers[lane.carrier_id].modes
        if kinds == ("dc", "distributor"):
            assert lane.mode == "road"
    for site in sites.values():
        inbound, outbound = network.lanes_to(site.site_id), network.lanes_from(site.site_id)
        if site.kind == "plant":
            assert outbound and not inbound, site
        elif site.kind == "dc":
            assert outbound and inbound, site
        else:
            assert inbound and not outbound, site


def test_distances_and_transit_times_are_plausible(network: Network) -> None:
    factor = {"road": 1.25, "rail": 1.15, "sea": 1.2}
    for lane in network.lanes.values():
        a, b = network.sites[lane.origin_site_id], network.sites[lane.destination_site_id]
        crow = great_circle_km(a.lat, a.lon, b.lat, b.lon)
        assert lane.distance_km == pytest.approx(crow * factor[lane.mode], abs=1.0), lane
        speed = lane.distance_km / lane.planned_transit_hours
        if lane.mode == "road":
            assert 20 <= speed <= 65, lane  # 65 km/h at the wheel, less with breaks and rests
            driving = lane.distance_km / 65
            if driving > 9:
                assert lane.planned_transit_hours >= driving + 11, "a daily rest is planned"
        else:
            assert 15 <= speed <= 45, lane  # terminal and port time


def test_great_circle_km_known_distance() -> None:
    # Paris - Berlin is about 878 km as the crow flies.
    assert great_circle_km(48.8566, 2.3522, 52.52, 13.405) == pytest.approx(878, abs=5)


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    for name in ("sites.csv", "skus.csv", "carriers.csv", "lanes.csv"):
        shutil.copy(DATA_DIR / name, tmp_path / name)
    return tmp_path


def _edit_line(path: Path, line: int, edit: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = edit
    path.write_text("".join(lines), encoding="utf-8")


def _row(path: Path, line: int) -> list[str]:
    text = path.read_text(encoding="utf-8").splitlines()[line - 1]
    return next(csv.reader([text]))


def _joined(fields: list[str]) -> str:
    return ",".join(f'"{field}"' if "," in field else field for field in fields) + "\n"


@pytest.mark.parametrize(
    ("file", "line", "change", "message"),
    [
        ("sites.csv", 5, {6: "north"}, "lat 'north' is not a number"),
        ("sites.csv", 7, {7: "200.0"}, "lon '200.0' is outside -180..180"),
        ("sites.csv", 9, {2: "warehouse"}, "kind 'warehouse' is not one of"),
        ("skus.csv", 4, {4: "205.5"}, "width_mm '205.5' is not an integer"),
        ("skus.csv", 6, {3: "spring"}, "season 'spring' is not one of"),
        ("carriers.csv", 3, {2: "road;air"}, "modes: 'air' is not one of"),
        ("carriers.csv", 2, {3: "1.5"}, "on_time_bias '1.5' is outside 0..1"),
        ("lanes.csv", 10, {1: "PLT-XX-NOP"}, "origin_site_id 'PLT-XX-NOP' is not in sites.csv"),
        ("lanes.csv", 11, {4: "CAR-NOPE"}, "carrier_id 'CAR-NOPE' is not in carriers.csv"),
        ("lanes.csv", 12, {5: ""}, "distance_km is empty"),
        ("lanes.csv", 13, {3: "sea", 4: "CAR-GAL"}, "carrier CAR-GAL does not run mode 'sea'"),
    ],
)
def test_malformed_csv_names_file_and_line(
    data_copy: Path, file: str, line: int, change: dict[int, str], message: str
) -> None:
    path = data_copy / file
    fields = _row(path, line)
    for index, value in change.items():
        fields[index] = value
    _edit_line(path, line, _joined(fields))
    with pytest.raises(ReferenceDataError) as caught:
        load_network(data_copy)
    assert f"{path}:{line}: " in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_id_names_the_second_line(data_copy: Path) -> None:
    path = data_copy / "sites.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines) + lines[3], encoding="utf-8")
    duplicate_line = len(lines) + 1
    with pytest.raises(
        ReferenceDataError, match=rf"sites\.csv:{duplicate_line}: duplicate site_id"
    ):
        load_network(data_copy)


def test_wrong_field_count(data_copy: Path) -> None:
    path = data_copy / "lanes.csv"
    _edit_line(path, 3, "LN-X,PLT-DE-HAN,DC-DE-KSL,road\n")
    with pytest.raises(ReferenceDataError, match=r"lanes\.csv:3: 4 fields, the header has 7"):
        load_network(data_copy)


def test_missing_column_names_the_header_line(data_copy: Path) -> None:
    path = data_copy / "carriers.csv"
    text = path.read_text(encoding="utf-8").replace("on_time_bias", "reliability", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"carriers\.csv:1: missing column\(s\) on_time"):
        load_network(data_copy)


def test_missing_and_empty_files(data_copy: Path) -> None:
    (data_copy / "skus.csv").unlink()
    with pytest.raises(ReferenceDataError, match=r"skus\.csv: cannot read"):
        load_network(data_copy)
    (data_copy / "skus.csv").write_text("", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"skus\.csv:1: empty file"):
        load_network(data_copy)


def test_blank_lines_and_byte_order_mark_are_tolerated(data_copy: Path) -> None:
    path = data_copy / "carriers.csv"
    path.write_text("\ufeff" + path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert len(load_network(data_copy).carriers) == len(load_network().carriers)
