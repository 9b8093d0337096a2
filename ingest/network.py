"""The reference network in data/ (sites, SKUs, carriers, lanes): loading and checking it."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar

from ingest.errors import ReferenceDataError

DATA_DIR: Final = Path(__file__).resolve().parent.parent / "data"

SITE_KINDS: Final = ("plant", "dc", "distributor")
SEGMENTS: Final = ("passenger", "van", "truck", "agricultural")
SEASONS: Final = ("summer", "winter", "all_season")
MODES: Final = ("road", "rail", "sea")


@dataclass(frozen=True, slots=True)
class Site:
    """A plant, distribution centre (dc) or distributor warehouse."""

    site_id: str
    name: str
    kind: str
    city: str
    country: str
    region: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Sku:
    """One tire article: size, load index, speed rating, season."""

    sku: str
    description: str
    segment: str
    season: str
    width_mm: int
    aspect_ratio: int
    rim_inch: float
    load_index: int
    speed_rating: str
    weight_kg: float


@dataclass(frozen=True, slots=True)
class Carrier:
    """A haulier; `on_time_bias` (0..1) is its reliability: 1 never late, 0 always."""

    carrier_id: str
    name: str
    modes: tuple[str, ...]
    on_time_bias: float


@dataclass(frozen=True, slots=True)
class Lane:
    """A planned origin -> destination connection served by one carrier in one mode."""

    lane_id: str
    origin_site_id: str
    destination_site_id: str
    mode: str
    carrier_id: str
    distance_km: float
    planned_transit_hours: float


@dataclass(frozen=True)
class Network:
    """The whole reference network, each table a read-only mapping by id in file order."""

    sites: Mapping[str, Site]
    skus: Mapping[str, Sku]
    carriers: Mapping[str, Carrier]
    lanes: Mapping[str, Lane]

    def sites_of_kind(self, kind: str) -> list[Site]:
        return [site for site in self.sites.values() if site.kind == kind]

    def lanes_from(self, site_id: str) -> list[Lane]:
        return [lane for lane in self.lanes.values() if lane.origin_site_id == site_id]

    def lanes_to(self, site_id: str) -> list[Lane]:
        return [lane for lane in self.lanes.values() if lane.destination_site_id == site_id]


SITE_COLUMNS: Final = ("site_id", "name", "kind", "city", "country", "region", "lat", "lon")
SKU_COLUMNS: Final = (
    "sku",
    "description",
    "segment",
    "season",
    "width_mm",
    "aspect_ratio",
    "rim_inch",
    "load_index",
    "speed_rating",
    "weight_kg",
)
CARRIER_COLUMNS: Final = ("carrier_id", "name", "modes", "on_time_bias")
LANE_COLUMNS: Final = (
    "lane_id",
    "origin_site_id",
    "destination_site_id",
    "mode",
    "carrier_id",
    "distance_km",
    "planned_transit_hours",
)

T = TypeVar("T")

EARTH_RADIUS_KM: Final = 6371.0


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


class _Row:
    """One CSV row with typed accessors that raise ReferenceDataError naming file and line."""

    def __init__(self, path: Path, line: int, values: dict[str, str]) -> None:
        self.path = path
        self.line = line
        self.values = values

    def error(self, message: str) -> ReferenceDataError:
        return ReferenceDataError(f"{self.path}:{self.line}: {message}")

    def text(self, column: str, max_length: int = 200) -> str:
        value = self.values[column].strip()
        if not value:
            raise self.error(f"{column} is empty")
        if len(value) > max_length:
            raise self.error(f"{column} is longer than {max_length} characters")
        return value

    def choice(self, column: str, allowed: tuple[str, ...]) -> str:
        value = self.text(column)
        if value not in allowed:
            raise self.error(f"{column} {value!r} is not one of {', '.join(allowed)}")
        return value

    def number(self, column: str, low: float, high: float) -> float:
        raw = self.text(column)
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{column} {raw!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise self.error(f"{column} {raw!r} is outside {low:g}..{high:g}")
        return value

    def integer(self, column: str, low: int, high: int) -> int:
        raw = self.text(column)
        try:
            value = int(raw)
        except ValueError:
            raise self.error(f"{column} {raw!r} is not an integer") from None
        if not low <= value <= high:
            raise self.error(f"{column} {raw!r} is outside {low}..{high}")
        return value


def _read_rows(path: Path, columns: tuple[str, ...]) -> Iterator[_Row]:
    """Rows of one CSV file after checking its header; line numbers count the header as 1."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise ReferenceDataError(f"{path}: cannot read reference data: {e.strerror}") from e
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ReferenceDataError(f"{path}:1: empty file, expected a header row")
            header = [name.strip() for name in header]
            missing = [column for column in columns if column not in header]
            if missing:
                raise ReferenceDataError(
                    f"{path}:1: missing column(s) {', '.join(missing)} in the header"
                )
            for fields in reader:
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise ReferenceDataError(
                        f"{path}:{reader.line_num}: {len(fields)} fields, "
                        f"the header has {len(header)}"
                    )
                yield _Row(path, reader.line_num, dict(zip(header, fields, strict=True)))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ReferenceDataError(f"{path}:{reader.line_num}: not a valid CSV file: {e}") from e


def _load_table(
    path: Path, columns: tuple[str, ...], id_column: str, parse: Callable[[_Row], T]
) -> dict[str, T]:
    table: dict[str, T] = {}
    for row in _read_rows(path, columns):
        key = row.text(id_column, max_length=64)
        if key in table:
            raise row.error(f"duplicate {id_column} {key!r}")
        table[key] = parse(row)
    if not table:
        raise ReferenceDataError(f"{path}: no rows")
    return table


def _site(row: _Row) -> Site:
    return Site(
        site_id=row.text("site_id", max_length=64),
        name=row.text("name"),
        kind=row.choice("kind", SITE_KINDS),
        city=row.text("city"),
        country=row.text("country", max_length=2),
        region=row.text("region"),
        lat=row.number("lat", -90.0, 90.0),
        lon=row.number("lon", -180.0, 180.0),
    )


def _sku(row: _Row) -> Sku:
    return Sku(
        sku=row.text("sku", max_length=64),
        description=row.text("description"),
        segment=row.choice("segment", SEGMENTS),
        season=row.choice("season", SEASONS),
        width_mm=row.integer("width_mm", 100, 1200),
        aspect_ratio=row.integer("aspect_ratio", 20, 110),
        rim_inch=row.number("rim_inch", 10.0, 54.0),
        load_index=row.integer("load_index", 50, 250),
        speed_rating=row.text("speed_rating", max_length=3),
        weight_kg=row.number("weight_kg", 1.0, 5000.0),
    )


def _carrier(row: _Row) -> Carrier:
    modes = tuple(mode.strip() for mode in row.text("modes").split(";"))
    for mode in modes:
        if mode not in MODES:
            raise row.error(f"modes: {mode!r} is not one of {', '.join(MODES)}")
    return Carrier(
        carrier_id=row.text("carrier_id", max_length=64),
        name=row.text("name"),
        modes=modes,
        on_time_bias=row.number("on_time_bias", 0.0, 1.0),
    )


def _lane(row: _Row) -> Lane:
    return Lane(
        lane_id=row.text("lane_id", max_length=64),
        origin_site_id=row.text("origin_site_id", max_length=64),
        destination_site_id=row.text("destination_site_id", max_length=64),
        mode=row.choice("mode", MODES),
        carrier_id=row.text("carrier_id", max_length=64),
        distance_km=row.number("distance_km", 1.0, 20000.0),
        planned_transit_hours=row.number("planned_transit_hours", 0.1, 2000.0),
    )


def load_network(data_dir: Path | None = None) -> Network:
    """Read and check sites.csv, skus.csv, carriers.csv and lanes.csv from `data_dir`."""
    directory = DATA_DIR if data_dir is None else Path(data_dir)
    sites = _load_table(directory / "sites.csv", SITE_COLUMNS, "site_id", _site)
    skus = _load_table(directory / "skus.csv", SKU_COLUMNS, "sku", _sku)
    carriers = _load_table(directory / "carriers.csv", CARRIER_COLUMNS, "carrier_id", _carrier)

    lanes_path = directory / "lanes.csv"
    lanes: dict[str, Lane] = {}
    for row in _read_rows(lanes_path, LANE_COLUMNS):
        lane = _lane(row)
        if lane.lane_id in lanes:
            raise row.error(f"duplicate lane_id {lane.lane_id!r}")
        for column, site_id in (
            ("origin_site_id", lane.origin_site_id),
            ("destination_site_id", lane.destination_site_id),
        ):
            if site_id not in sites:
                raise row.error(f"{column} {site_id!r} is not in sites.csv")
        if lane.origin_site_id == lane.destination_site_id:
            raise row.error("origin_site_id and destination_site_id are the same site")
        carrier = carriers.get(lane.carrier_id)
        if carrier is None:
            raise row.error(f"carrier_id {lane.carrier_id!r} is not in carriers.csv")
        if lane.mode not in carrier.modes:
            raise row.error(f"carrier {lane.carrier_id} does not run mode {lane.mode!r}")
        lanes[lane.lane_id] = lane
    if not lanes:
        raise ReferenceDataError(f"{lanes_path}: no rows")

    return Network(
        sites=MappingProxyType(sites),
        skus=MappingProxyType(skus),
        carriers=MappingProxyType(carriers),
        lanes=MappingProxyType(lanes),
    )
