"""The event simulator: a seeded, lazy stream of contract events over the reference network.

Time model. Every timestamp is wall time: an on-time message's `occurred_at` is its `emit_at`.
Simulated durations (lead times, transit, breaks, dwell, delays, ping intervals) are divided by
`time_scale` before they become wall time, so at the default 60 a 9 h trip takes 9 wall minutes
and every interval between two timestamps of one shipment is 60 times shorter than on the road.
Quantities that describe the physical world keep their real units: `speed_kmh` is the truck's
road speed and `estimated_delay_minutes` is the delay expressed in the stream's own (wall)
minutes, rounded up, so it agrees with the ETA shift that follows it.

Rate. `rate` is the long-run number of clean (fault-free) messages per wall second; injected
faults come on top. About 8 % of it goes to inventory events, the rest to shipments, and the
shipment fleet size follows from it (see `fleet_size`): position pings dominate. At start-up
the part of the fleet that would be on the road in steady state is planned at short notice and
leaves within the first simulated hour, so the stream runs at about 90 % of the rate from the
first simulated hour and settles within +-10 % of it after about one shipment lifecycle
(~20 simulated hours).

Stock. The simulator keeps each warehouse's book stock by the contract's own rules (departures
take the plan's lines, deliveries add the good lines, cancellations after departure return the
plan) and every `inventory.counted` reports that book value, so a consumer that derives stock
correctly reproduces every count exactly. Replenishment is pulled by stock targets: shipments
carry what the destination lacks, plants produce what they shipped, distributors sell at a
seasonal rate matched to what the fleet can deliver.

Identifiers include a run tag derived from the seed and the start time, so two runs against the
same broker never share a `shipment_id` or `event_id`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import orjson

from ingest.contract import INVENTORY, SHIPMENTS
from ingest.errors import ConfigError
from ingest.network import Carrier, Lane, Network, Site

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_HOUR_MS: Final = 3_600_000


def _default_start() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message to publish: topic family, key, value bytes and the wall time to send it."""

    family: str
    key: str
    value: bytes
    emit_at: datetime


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate; fault rates are fractions of the clean messages (see `inject_faults`)."""

    seed: int = 42
    rate: float = 50.0
    time_scale: float = 60.0
    start: datetime = field(default_factory=_default_start)
    duration_s: float | None = None
    max_events: int | None = None
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    malformed_rate: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ConfigError(f"simulator rate must be a positive number, got {self.rate}")
        if not math.isfinite(self.time_scale) or self.time_scale <= 0:
            raise ConfigError(
                f"simulator time_scale must be a positive number, got {self.time_scale}"
            )
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ConfigError(f"simulator start must be timezone-aware, got {self.start}")
        if self.duration_s is not None and not self.duration_s >= 0:
            raise ConfigError(f"simulator duration_s must be >= 0, got {self.duration_s}")
        if self.max_events is not None and self.max_events < 0:
            raise ConfigError(f"simulator max_events must be >= 0, got {self.max_events}")
        for name in ("duplicate_rate", "out_of_order_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"simulator {name} must be between 0 and 1, got {value}")


def simulate(settings: SimulationSettings, network: Network) -> Iterator[SimMessage]:
    """Messages in non-decreasing `emit_at` order, generated lazily; endless without limits."""
    messages: Iterator[SimMessage] = _Simulation(settings, network).run()
    if settings.duplicate_rate or settings.out_of_order_rate or settings.malformed_rate:
        messages = inject_faults(messages, settings)
    return _bounded(messages, settings)


def _bounded(messages: Iterator[SimMessage], settings: SimulationSettings) -> Iterator[SimMessage]:
    end = None
    if settings.duration_s is not None:
        end = settings.start + timedelta(seconds=settings.duration_s)
    remaining = settings.max_events
    if remaining == 0:
        return
    for message in messages:
        if end is not None and message.emit_at > end:
            return
        yield message
        if remaining is not None:
            remaining -= 1
            if remaining == 0:
                return


# --- Simulated world: all durations in simulated hours unless named otherwise. ---

INVENTORY_SHARE: Final = 0.08
_COUNT_SHARE, _PRODUCE_SHARE, _SELL_SHARE, _SHRINK_SHARE = 0.30, 0.22, 0.42, 0.06

_LEAD_H: Final = (2.0, 12.0)  # shipment.created this long before planned departure
_FIRST_WAVE_LEAD_H: Final = (0.1, 0.75)  # for the part of the fleet that starts on the road
_SECOND_WAVE_LEAD_H: Final = (0.5, 12.0)  # for the rest of the fleet at start-up
_PING_MIN: Final = (5.0, 10.0)  # minutes between telematics pings
_DWELL_H: Final = (0.5, 3.0, 1.0)  # arrived -> delivered, triangular (low, high, mode)
_RESPAWN_H: Final = 0.5  # a fleet slot is idle up to this long between two shipments
_ETA_DRIFT_H: Final = 0.5  # an eta_updated is sent when the projection moves this much
_P_REPLAN: Final = 0.08
_P_CANCEL_PLANNED: Final = 0.025
_P_CANCEL_MOVING: Final = 0.004
_P_SHORTAGE: Final = 0.04
_P_DAMAGE: Final = 0.03

_CAPACITY_PCE: Final = {"road": 1000.0, "rail": 2400.0, "sea": 1000.0}  # passenger-tire units
_PCE_KG: Final = 9.0  # a tire's space in a trailer, in passenger tires, is about its weight / 9 kg
_PCE_MIN: Final = 0.85  # small tires still need their slot
_FILL: Final = 0.75  # average load factor the demand is calibrated to
_LINE_COUNT_WEIGHTS: Final = (15, 30, 30, 25)  # 1, 2, 3 or 4 lines
_COVER_H: Final = {"plant": 48.0, "dc": 120.0, "distributor": 96.0}  # stock target, hours of flow
# Plants and DCs keep at least this much of each SKU (in PCE), so that a small fleet (low rate,
# high time scale) still ships full lines instead of whatever a few hours of flow leave.
_ORIGIN_MIN_PCE: Final = 600.0

_ROAD_KMH: Final = 65.0
_DRIVE_BLOCK_H, _BREAK_H, _DRIVE_DAY_H, _DAILY_REST_H = 4.5, 0.75, 9.0, 11.0
_LINE_KMH: Final = {"rail": 50.0, "sea": 35.0}

_SEGMENT_SHARE: Final = {"passenger": 0.70, "van": 0.12, "truck": 0.13, "agricultural": 0.05}
_WINTER_AFFINITY: Final = {
    "Nordics": 1.6,
    "DACH": 1.3,
    "Central Europe": 1.2,
    "South-East Europe": 0.9,
    "Benelux": 0.8,
    "France": 0.6,
    "Italy": 0.5,
    "UK & Ireland": 0.3,
    "Iberia": 0.15,
}
_NON_EU: Final = ("GB", "CH", "NO", "RS", "BA", "ME", "MK", "AL", "TR", "UA", "MD", "IS")

_EXCEPTIONS: Final[dict[str, tuple[float, float, tuple[str, ...]]]] = {
    # code: (min, max delay in simulated minutes, messages)
    "TRAFFIC": (15, 150, ("congestion on the motorway", "accident ahead, lane closed", "roadwork")),
    "WEATHER": (30, 360, ("snowfall, reduced speed", "heavy rain", "fog", "strong crosswinds")),
    "BREAKDOWN": (45, 480, ("tractor unit breakdown", "trailer tyre blowout", "brake defect")),
    "CUSTOMS": (30, 720, ("documents checked at customs", "physical customs inspection")),
    "STRIKE": (180, 1440, ("strike at the terminal", "blockade by protesters")),
    "DAMAGE": (0, 45, ("load shifted, some tires damaged", "handling damage at transhipment")),
    "OTHER": (10, 180, ("driver replaced", "route diversion", "waiting for a slot at the gate")),
}
_CANCEL_PLANNED_REASONS: Final = (
    "order withdrawn by the customer",
    "consolidated into another shipment",
    "no vehicle available",
    "stock reallocated",
)
_CANCEL_MOVING_REASONS: Final = (
    "vehicle recalled to origin: load rejected",
    "returned to origin after an accident",
)

# Producers in some countries write local time: the WMS of those sites and some carriers.
_LOCAL_TIME_SHARE: Final = 0.3
_ZONE_BY_COUNTRY: Final = {"GB": "WET", "IE": "WET", "PT": "WET", "RO": "EET", "BG": "EET"}
_STANDARD_OFFSET_MIN: Final = {"WET": 0, "CET": 60, "EET": 120}


@lru_cache(maxsize=32)
def _eu_summer_time_ms(year: int) -> tuple[int, int]:
    """EU summer time: last Sunday of March to last Sunday of October, 01:00 UTC both."""

    def last_sunday_1am(month: int) -> int:
        last = datetime(year, month, 31, 1, tzinfo=UTC)
        last -= timedelta(days=(last.weekday() + 1) % 7)
        return (last - _EPOCH) // _MS

    return last_sunday_1am(3), last_sunday_1am(10)


def _offset_minutes(ms: int, zone: str) -> int:
    begin, end = _eu_summer_time_ms(time.gmtime(ms // 1000).tm_year)
    return _STANDARD_OFFSET_MIN[zone] + (60 if begin <= ms < end else 0)


class _Stamps:
    """RFC 3339 text for a millisecond instant, in UTC (`Z`) or a European local offset."""

    def __init__(self) -> None:
        self._second = -(2**62)
        self._prefix = ""
        self._local: dict[str, tuple[int, str, str]] = {}  # zone -> (second, text, offset)

    def utc(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}Z"

    def local(self, ms: int, zone: str) -> str:
        second, milli = divmod(ms, 1000)
        cached = self._local.get(zone)
        if cached is None or cached[0] != second:
            # Offsets change on a whole second (01:00 UTC), so caching per second is exact.
            offset = _offset_minutes(ms, zone)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second + offset * 60))
            cached = (second, text, f"+{offset // 60:02d}:{offset % 60:02d}")
            self._local[zone] = cached
        return f"{cached[1]}.{milli:03d}{cached[2]}"


def _month(ms: int) -> int:
    return time.gmtime(ms // 1000).tm_mon


def _season_weight(season: str, month: int, region: str) -> float:
    cold_months = month in (10, 11, 12, 1, 2)
    if season == "winter":
        return _WINTER_AFFINITY.get(region, 0.7) * (3.0 if cold_months else 0.25)
    if season == "summer":
        return 0.6 if cold_months else 1.5 if month in (3, 4, 5, 6) else 1.0
    return 0.6


def _crosses_customs(origin: Site, destination: Site) -> bool:
    return origin.country != destination.country and (
        origin.country in _NON_EU or destination.country in _NON_EU
    )


@dataclass(frozen=True)
class _Plan:
    """Everything about the network the simulator derives once per seed."""

    lanes: list[Lane]
    lane_weights: list[float]
    market: dict[str, float]  # distributor -> relative market size
    popularity: dict[str, float]  # sku -> relative popularity within its segment
    stocked: dict[str, list[str]]  # site -> skus it stocks, in skus.csv order
    local_zone: dict[str, str]  # source -> zone, for sources that write local time


def _derive_plan(network: Network, seed: int) -> _Plan:
    rng = random.Random(f"tiretrack-network-{seed}")
    sites = network.sites
    market = {s.site_id: rng.uniform(0.6, 1.6) for s in network.sites_of_kind("distributor")}
    popularity = {sku: rng.uniform(0.4, 1.6) for sku in network.skus}

    # Each plant makes part of the range; every SKU is made somewhere.
    plants = network.sites_of_kind("plant")
    share_made = {"passenger": 0.7, "van": 0.5, "truck": 0.4, "agricultural": 0.35}
    portfolio: dict[str, list[str]] = {p.site_id: [] for p in plants}
    for sku in network.skus.values():
        makers = [p.site_id for p in plants if rng.random() < share_made[sku.segment]]
        if not makers and plants:
            makers = [rng.choice(plants).site_id]
        for plant_id in makers:
            portfolio[plant_id].append(sku.sku)

    # A warehouse stocks what its inbound lanes can bring (plants: what they make).
    stocked: dict[str, list[str]] = {}

    def range_of(site_id: str, path: tuple[str, ...]) -> list[str]:
        if site_id in stocked:
            return stocked[site_id]
        if site_id in portfolio:
            result = portfolio[site_id]
        else:
            wanted: dict[str, None] = {}
            for lane in network.lanes_to(site_id):
                if lane.origin_site_id not in path:
                    for sku in range_of(lane.origin_site_id, (*path, site_id)):
                        wanted[sku] = None
            result = [sku for sku in network.skus if sku in wanted]
        stocked[site_id] = result
        return result

    for site_id in sites:
        range_of(site_id, ())

    # Lane weights balance tire flow: a distributor's lanes carry its market, a warehouse's
    # inbound lanes share what its outbound lanes carry, in trucks (or wagons) per hour.
    volume: dict[str, float] = {}

    def volume_of(site_id: str, path: tuple[str, ...]) -> float:
        if site_id not in volume:
            if site_id in market:
                own = market[site_id]
            else:
                own = sum(
                    lane_volume(lane, (*path, site_id))
                    for lane in network.lanes_from(site_id)
                    if lane.destination_site_id not in path
                )
            volume[site_id] = max(own, 0.2)
        return volume[site_id]

    def lane_volume(lane: Lane, path: tuple[str, ...]) -> float:
        inbound = len(network.lanes_to(lane.destination_site_id))
        return volume_of(lane.destination_site_id, path) / inbound

    lanes = [lane for lane in network.lanes.values() if stocked[lane.origin_site_id]]
    lane_weights = [lane_volume(lane, ()) / _CAPACITY_PCE[lane.mode] for lane in lanes]

    local_zone: dict[str, str] = {}
    for site in sites.values():
        zone = _ZONE_BY_COUNTRY.get(site.country, "CET")
        for source in (site.site_id, _wms(site.site_id)):
            if rng.random() < _LOCAL_TIME_SHARE:
                local_zone[source] = zone
    for carrier_id in network.carriers:
        if rng.random() < _LOCAL_TIME_SHARE:
            local_zone[carrier_id] = "CET"
    return _Plan(lanes, lane_weights, market, popularity, stocked, local_zone)


def _wms(site_id: str) -> str:
    return f"wms-{site_id.lower()}"


def _p_exception(carrier: Carrier) -> float:
    return 0.08 + 0.6 * (1.0 - carrier.on_time_bias)


def _expected_shipment(lane: Lane, carrier: Carrier) -> tuple[float, float]:
    """(messages, simulated hours from created to the next shipment of the slot) on a lane."""
    p_late = 0.3 * (1.0 - carrier.on_time_bias)
    departure_delay = 0.05 + p_late * 2.5
    p_exception = _p_exception(carrier)
    transit = lane.planned_transit_hours * 1.02 + p_exception * 2.5
    hours = sum(_LEAD_H) / 2 + departure_delay + transit + (sum(_DWELL_H) / 3) + _RESPAWN_H / 2
    pings = transit * 60.0 / (sum(_PING_MIN) / 2)
    messages = 5.0 + _P_REPLAN + pings + p_exception * 2.0 + 0.7
    # A shipment cancelled before departure sends two messages and frees its slot early.
    messages = messages * (1.0 - _P_CANCEL_PLANNED) + 2.0 * _P_CANCEL_PLANNED
    hours -= _P_CANCEL_PLANNED * (transit + sum(_DWELL_H) / 3 + sum(_LEAD_H) / 4)
    return messages, hours


def fleet_size(settings: SimulationSettings, network: Network) -> int:
    """Shipments active at once (created, not yet delivered or cancelled) for `settings.rate`."""
    plan = _derive_plan(network, settings.seed)
    total = sum(plan.lane_weights)
    messages = hours = 0.0
    for lane, weight in zip(plan.lanes, plan.lane_weights, strict=True):
        m, h = _expected_shipment(lane, network.carriers[lane.carrier_id])
        messages += m * weight / total
        hours += h * weight / total
    if not plan.lanes:
        return 0
    shipments_per_s = settings.rate * (1.0 - INVENTORY_SHARE) / messages
    return max(1, round(shipments_per_s * hours * 3600.0 / settings.time_scale))


class _Shipment:
    """A shipment's plan and, once it moves, its trip: a queue of drive and stop segments."""

    __slots__ = (
        "shipment_id",
        "lane",
        "carrier",
        "origin",
        "destination",
        "lines",
        "origin_source",
        "planned_departure",
        "planned_arrival",
        "departure_at",
        "replan_at",
        "cancel_at",
        "exception_at",
        "next_ping",
        "arrival_at",
        "segments",
        "km_done",
        "moved_at",
        "path",
        "lon_scale",
        "carrier_zone",
        "last_eta",
        "eta_reason",
        "damaged",
    )

    def __init__(
        self,
        shipment_id: str,
        lane: Lane,
        carrier: Carrier,
        origin: Site,
        destination: Site,
        lines: list[list[Any]],
    ) -> None:
        self.shipment_id = shipment_id
        self.lane = lane
        self.carrier = carrier
        self.origin = origin
        self.destination = destination
        self.lines = lines  # [[sku, quantity], ...]
        self.origin_source = origin.site_id if origin.kind == "plant" else _wms(origin.site_id)
        self.planned_departure = 0
        self.planned_arrival = 0
        self.departure_at = 0
        self.replan_at: int | None = None
        self.cancel_at: int | None = None
        self.exception_at: list[int] = []
        self.next_ping = 0
        self.arrival_at = 0
        # [wall ms left, km left, road speed km/h]; speed 0 is a stop
        self.segments: deque[list[float]] = deque()
        self.km_done = 0.0
        self.moved_at = 0  # the segments are consumed up to this wall instant
        self.path = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # origin, control point, destination
        self.lon_scale = 1.0  # km per degree of longitude / km per degree of latitude
        self.carrier_zone: str | None = None
        self.last_eta = 0
        self.eta_reason: str | None = None
        self.damaged = False


_Handler = Callable[[Any, int], None]


class _StockTask:
    """A recurring inventory event for one SKU at one site."""

    __slots__ = ("site", "sku", "interval_ms", "last_ms", "carry")

    def __init__(self, site: Site, sku: str, interval_ms: int, last_ms: int) -> None:
        self.site = site
        self.sku = sku
        self.interval_ms = interval_ms
        self.last_ms = last_ms
        self.carry = 0.0


class _Simulation:
    """The event loop: a heap of timed actions, each emitting the events that happen then."""

    def __init__(self, settings: SimulationSettings, network: Network) -> None:
        self.network = network
        self.rng = random.Random(settings.seed)
        self.plan = _derive_plan(network, settings.seed)
        self.ms_per_h = _HOUR_MS / settings.time_scale
        self.start_ms = (settings.start - _EPOCH) // _MS
        tag_source = f"{settings.seed}:{self.start_ms}".encode()
        tag = hashlib.blake2b(tag_source, digest_size=5).hexdigest()
        self.event_prefix = f"sim-{tag}-"
        self.shipment_prefix = f"SHP-{tag}-"
        self.events = 0
        self.shipments = 0

        self.heap: list[tuple[int, int, int, _Handler, Any]] = []
        self.seq = 0
        self.now = self.start_ms - 1
        self.out: list[tuple[str, str, bytes]] = []
        self.stamps = _Stamps()
        self.moving_step = self._moving_step  # one bound method for every heap entry
        self.ping_ms = tuple(minutes / 60.0 * self.ms_per_h for minutes in _PING_MIN)
        self.drift_ms = self._ms(_ETA_DRIFT_H)

        self.pce = {
            sku.sku: max(_PCE_MIN, sku.weight_kg / _PCE_KG) for sku in network.skus.values()
        }
        self.on_hand: dict[tuple[str, str], int] = {}
        self.committed: dict[tuple[str, str], int] = {}  # planned, not departed (origin)
        self.inbound: dict[tuple[str, str], int] = {}  # planned, not delivered (destination)
        self.lane_skus: dict[str, list[str]] = {}
        for lane in self.plan.lanes:
            wanted = set(self.plan.stocked[lane.destination_site_id])
            self.lane_skus[lane.lane_id] = [
                sku for sku in self.plan.stocked[lane.origin_site_id] if sku in wanted
            ]
        total_weight = sum(self.plan.lane_weights) or 1.0
        self.lane_cum_weights: list[float] = []
        acc = 0.0
        for weight in self.plan.lane_weights:
            acc += weight / total_weight
            self.lane_cum_weights.append(acc)

        self.fleet = fleet_size(settings, network)
        mean_hours = (
            sum(
                _expected_shipment(lane, network.carriers[lane.carrier_id])[1] * weight
                for lane, weight in zip(self.plan.lanes, self.plan.lane_weights, strict=True)
            )
            / total_weight
        )
        shipments_per_h = self.fleet / mean_hours if mean_hours else 0.0
        mean_transit_h = (
            sum(
                lane.planned_transit_hours * weight
                for lane, weight in zip(self.plan.lanes, self.plan.lane_weights, strict=True)
            )
            / total_weight
        )
        self.moving_share = mean_transit_h / mean_hours if mean_hours else 0.0
        # PCE per simulated hour arriving at each site at the calibrated load factor.
        self.inflow_pce: dict[str, float] = {}
        self.lane_flow: dict[str, float] = {}
        for lane, weight in zip(self.plan.lanes, self.plan.lane_weights, strict=True):
            flow = shipments_per_h * weight / total_weight * _FILL * _CAPACITY_PCE[lane.mode]
            self.lane_flow[lane.lane_id] = flow
            destination = lane.destination_site_id
            self.inflow_pce[destination] = self.inflow_pce.get(destination, 0.0) + flow
        self.targets_month = 0
        self.demand: dict[tuple[str, str], float] = {}  # tires per simulated hour
        self.target: dict[tuple[str, str], float] = {}
        self._refresh_targets(_month(self.start_ms))

        self._schedule_start(settings)

    # --- scheduling and emission ---

    def run(self) -> Iterator[SimMessage]:
        heap, out, pop = self.heap, self.out, heapq.heappop
        while heap:
            t, _priority, _seq, handler, subject = pop(heap)
            self.now = t
            handler(subject, t)
            if out:
                emit_at = _EPOCH + t * _MS
                for family, key, value in out:
                    yield SimMessage(family, key, value, emit_at)
                out.clear()

    def _at(self, t: float, handler: _Handler, subject: Any, priority: int = 0) -> None:
        # Never in the current millisecond: a count (priority 1) then sees every change at
        # its own instant, as the contract's "a change at the count's instant is included".
        self.seq += 1
        at = max(int(t), self.now + 1)
        heapq.heappush(self.heap, (at, priority, self.seq, handler, subject))

    def _ms(self, hours: float) -> int:
        return max(1, round(hours * self.ms_per_h))

    def _stamp(self, ms: int, source: str) -> str:
        zone = self.plan.local_zone.get(source)
        return self.stamps.utc(ms) if zone is None else self.stamps.local(ms, zone)

    def _envelope(self, event_type: str, source: str) -> dict[str, Any]:
        self.events += 1
        return {
            "event_id": f"{self.event_prefix}{self.events}",
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": self._stamp(self.now, source),
            "source": source,
        }

    def _shipment_event(self, shipment: _Shipment, event: dict[str, Any]) -> None:
        self.out.append((SHIPMENTS, shipment.shipment_id, orjson.dumps(event)))

    def _inventory_event(
        self, site: Site, sku: str, event_type: str, fields: dict[str, Any]
    ) -> None:
        event = self._envelope(event_type, _wms(site.site_id))
        event["site_id"] = site.site_id
        event["sku"] = sku
        event.update(fields)
        self.out.append((INVENTORY, site.site_id, orjson.dumps(event)))

    # --- start-up ---

    def _schedule_start(self, settings: SimulationSettings) -> None:
        rng = self.rng
        self._at(self.start_ms, self._initial_counts, None, priority=1)
        # Start near the steady state: the share of the fleet that would be on the road is
        # planned at short notice and leaves within the first simulated hour; the rest is
        # planned over the first hours as usual.
        for _ in range(self.fleet):
            if rng.random() < self.moving_share:
                at, lead = rng.uniform(0.0, 0.25), _FIRST_WAVE_LEAD_H
            else:
                at, lead = rng.uniform(0.0, 2.0), _SECOND_WAVE_LEAD_H
            self._at(self.start_ms + self._ms(at), self._spawn, lead)

        inventory_per_s = settings.rate * INVENTORY_SHARE
        sites = self.network.sites
        pairs = [
            (sites[site_id], sku) for site_id, skus in self.plan.stocked.items() for sku in skus
        ]
        plant_pairs = [(site, sku) for site, sku in pairs if site.kind == "plant"]
        sale_pairs = [(site, sku) for site, sku in pairs if site.kind == "distributor"]
        for share, chosen, handler, priority in (
            (_COUNT_SHARE, pairs, self._count, 1),
            (_PRODUCE_SHARE, plant_pairs, self._produce, 0),
            (_SELL_SHARE, sale_pairs, self._sell, 0),
        ):
            if not chosen:
                continue
            interval_ms = max(1, round(len(chosen) / (inventory_per_s * share) * 1000.0))
            for site, sku in chosen:
                task = _StockTask(site, sku, interval_ms, self.start_ms)
                self._at(self.start_ms + rng.uniform(1, interval_ms), handler, task, priority)
        self.shrink_interval_ms = 1000.0 / (inventory_per_s * _SHRINK_SHARE)
        self.shrink_pairs = pairs
        if pairs:
            self._at(
                self.start_ms + rng.expovariate(1.0) * self.shrink_interval_ms, self._shrink, None
            )

    def _initial_counts(self, _subject: None, t: int) -> None:
        rng = self.rng
        for site_id, skus in self.plan.stocked.items():
            site = self.network.sites[site_id]
            for sku in skus:
                on_hand = round(self.target[site_id, sku] * rng.uniform(0.7, 1.1))
                self.on_hand[site_id, sku] = on_hand
                self._inventory_event(site, sku, "inventory.counted", {"on_hand": on_hand})

    def _refresh_targets(self, month: int) -> None:
        """Demand and stock targets per (site, SKU) for a calendar month."""
        self.targets_month = month
        network, plan = self.network, self.plan
        skus = network.skus
        demand: dict[tuple[str, str], float] = {}
        for site_id in plan.market:
            site = network.sites[site_id]
            weights = {
                sku: _SEGMENT_SHARE[skus[sku].segment]
                * plan.popularity[sku]
                * _season_weight(skus[sku].season, month, site.region)
                for sku in plan.stocked[site_id]
            }
            total = sum(weights.values()) or 1.0
            inflow = self.inflow_pce.get(site_id, 0.0)
            for sku, weight in weights.items():
                demand[site_id, sku] = inflow * weight / total / self.pce[sku]
        # A warehouse's outflow of a SKU is its share of what its destinations need.
        outflow: dict[tuple[str, str], float] = dict(demand)

        def outflow_of(site_id: str, sku: str, path: tuple[str, ...]) -> float:
            key = (site_id, sku)
            if key not in outflow:
                total_out = 0.0
                for lane in network.lanes_from(site_id):
                    destination = lane.destination_site_id
                    if destination in path or lane.lane_id not in self.lane_flow:
                        continue
                    if sku not in self.lane_skus[lane.lane_id]:
                        continue
                    supply = sum(
                        self.lane_flow[other.lane_id]
                        for other in network.lanes_to(destination)
                        if other.lane_id in self.lane_flow and sku in self.lane_skus[other.lane_id]
                    )
                    share = self.lane_flow[lane.lane_id] / supply if supply else 0.0
                    total_out += share * outflow_of(destination, sku, (*path, site_id))
                outflow[key] = total_out
            return outflow[key]

        target: dict[tuple[str, str], float] = {}
        for site_id, stocked in plan.stocked.items():
            kind = network.sites[site_id].kind
            cover = _COVER_H[kind]
            for sku in stocked:
                floor = 4.0 if kind == "distributor" else _ORIGIN_MIN_PCE / self.pce[sku]
                target[site_id, sku] = max(floor, outflow_of(site_id, sku, ()) * cover)
        self.demand = demand
        self.target = target

    # --- stock ledger ---

    def _available(self, site_id: str, sku: str) -> int:
        key = (site_id, sku)
        return self.on_hand.get(key, 0) - self.committed.get(key, 0)

    def _need(self, site_id: str, sku: str) -> float:
        key = (site_id, sku)
        return self.target.get(key, 0.0) - self.on_hand.get(key, 0) - self.inbound.get(key, 0)

    def _book_plan(self, shipment: _Shipment, sign: int) -> None:
        origin, destination = shipment.origin.site_id, shipment.destination.site_id
        for sku, quantity in shipment.lines:
            self.committed[origin, sku] = self.committed.get((origin, sku), 0) + sign * quantity
            self.inbound[destination, sku] = (
                self.inbound.get((destination, sku), 0) + sign * quantity
            )

    def _load(self, lane: Lane) -> list[list[Any]]:
        """Lines for a new shipment: what the destination lacks most, within origin stock."""
        rng = self.rng
        origin, destination = lane.origin_site_id, lane.destination_site_id
        candidates = []
        for sku in self.lane_skus[lane.lane_id]:
            available = self._available(origin, sku)
            if available > 0:
                need = max(0.0, self._need(destination, sku))
                small = 0.02 * self.target.get((destination, sku), 1.0)
                candidates.append((sku, available, (need + small) * self.pce[sku], need))
        if not candidates:
            return []
        capacity = _CAPACITY_PCE[lane.mode]
        need_pce = sum(c[3] * self.pce[c[0]] for c in candidates)
        load_pce = min(capacity, max(0.3 * capacity, need_pce)) * rng.uniform(0.85, 1.0)
        count = rng.choices((1, 2, 3, 4), weights=_LINE_COUNT_WEIGHTS)[0]
        chosen = []
        weights = [c[2] for c in candidates]
        for _ in range(min(count, len(candidates))):
            index = rng.choices(range(len(candidates)), weights=weights)[0]
            chosen.append(candidates[index])
            weights[index] = 0.0
            if not any(weights):
                break
        total = sum(c[2] for c in chosen)
        lines = []
        for sku, available, weight, _need in chosen:
            quantity = min(available, round(load_pce * weight / total / self.pce[sku]))
            if quantity > 0:
                lines.append([sku, quantity])
        return lines

    # --- shipments ---

    def _spawn(self, lead_h: tuple[float, float], t: int) -> None:
        rng, network = self.rng, self.network
        lane = rng.choices(self.plan.lanes, cum_weights=self.lane_cum_weights)[0]
        lines = self._load(lane)
        if not lines:  # nothing to ship on this lane right now: the slot tries again later
            self._at(t + self._ms(rng.uniform(0.1, 0.5)), self._spawn, lead_h)
            return
        self.shipments += 1
        shipment = _Shipment(
            f"{self.shipment_prefix}{self.shipments:06d}",
            lane,
            network.carriers[lane.carrier_id],
            network.sites[lane.origin_site_id],
            network.sites[lane.destination_site_id],
            lines,
        )
        lead_ms = self._ms(rng.uniform(*lead_h))
        shipment.planned_departure = t + lead_ms
        shipment.planned_arrival = shipment.planned_departure + self._ms(lane.planned_transit_hours)
        shipment.departure_at = shipment.planned_departure + self._departure_noise_ms(shipment)
        if rng.random() < _P_REPLAN:
            shipment.replan_at = t + max(1, round(lead_ms * rng.uniform(0.2, 0.8)))
        if rng.random() < _P_CANCEL_PLANNED:
            shipment.cancel_at = t + max(1, round(lead_ms * rng.uniform(0.1, 0.95)))
        self._book_plan(shipment, +1)
        self._emit_created(shipment)
        self._schedule_planned(shipment)

    def _departure_noise_ms(self, shipment: _Shipment) -> int:
        rng = self.rng
        hours = min(1.0, max(-0.3, rng.gauss(0.05, 0.2)))
        if rng.random() < 0.3 * (1.0 - shipment.carrier.on_time_bias):
            hours += rng.uniform(1.0, 4.0)
        return round(hours * self.ms_per_h)

    def _emit_created(self, shipment: _Shipment) -> None:
        source = shipment.origin_source
        lane = shipment.lane
        event = self._envelope("shipment.created", source)
        event["shipment_id"] = shipment.shipment_id
        event["origin_site_id"] = lane.origin_site_id
        event["destination_site_id"] = lane.destination_site_id
        event["carrier_id"] = lane.carrier_id
        event["mode"] = lane.mode
        event["planned_departure"] = self._stamp(shipment.planned_departure, source)
        event["planned_arrival"] = self._stamp(shipment.planned_arrival, source)
        event["lines"] = [{"sku": sku, "quantity": quantity} for sku, quantity in shipment.lines]
        self._shipment_event(shipment, event)

    def _schedule_planned(self, shipment: _Shipment) -> None:
        due = shipment.departure_at
        for t in (shipment.replan_at, shipment.cancel_at):
            if t is not None and t < due:
                due = t
        self._at(due, self._planned_step, shipment)

    def _planned_step(self, shipment: _Shipment, t: int) -> None:
        if shipment.cancel_at is not None and shipment.cancel_at <= t:
            if shipment.cancel_at < shipment.departure_at:
                self._cancel_planned(shipment)
                return
            shipment.cancel_at = None  # it left before the cancellation came through
        if shipment.replan_at is not None and shipment.replan_at <= t:
            shipment.replan_at = None
            if t < shipment.departure_at:
                self._replan(shipment, t)
                self._schedule_planned(shipment)
                return
        if t >= shipment.departure_at:
            self._depart(shipment, t)
        else:
            self._schedule_planned(shipment)

    def _cancel_planned(self, shipment: _Shipment) -> None:
        self._book_plan(shipment, -1)
        event = self._envelope("shipment.cancelled", shipment.origin_source)
        event["shipment_id"] = shipment.shipment_id
        event["reason"] = self.rng.choice(_CANCEL_PLANNED_REASONS)
        self._shipment_event(shipment, event)
        self._finish(shipment)

    def _replan(self, shipment: _Shipment, t: int) -> None:
        rng = self.rng
        self._book_plan(shipment, -1)
        origin = shipment.origin.site_id
        if rng.random() < 0.6:  # the order changed, within the vehicle's capacity
            lines = [list(line) for line in shipment.lines]
            capacity = _CAPACITY_PCE[shipment.lane.mode]
            index = rng.randrange(len(lines))
            sku, quantity = lines[index]
            if len(lines) > 1 and rng.random() < 0.25:
                del lines[index]
            else:
                others = sum(self.pce[s] * q for i, (s, q) in enumerate(lines) if i != index)
                fits = int((capacity - others) / self.pce[sku])
                wanted = round(quantity * rng.uniform(0.6, 1.3))
                # This shipment's own lines are unbooked: `quantity` is always available.
                lines[index][1] = max(1, min(self._available(origin, sku), fits, wanted))
            present = {line[0] for line in lines}
            spare = [
                other
                for other in self.lane_skus[shipment.lane.lane_id]
                if other not in present and self._available(origin, other) > 0
            ]
            if spare and len(lines) < 4 and rng.random() < 0.3:
                sku = rng.choice(spare)
                room = capacity - sum(self.pce[s] * q for s, q in lines)
                wanted = min(round(rng.uniform(20, 150)), int(room)) / self.pce[sku]
                added = min(self._available(origin, sku), int(wanted))
                if added > 0:
                    lines.append([sku, added])
            shipment.lines = lines
        else:  # the slot moved
            shift = self._ms(rng.uniform(-1.5, 3.0))
            shift = max(shift, t + self._ms(0.25) - shipment.planned_departure)
            shipment.planned_departure += shift
            shipment.planned_arrival += shift
            shipment.departure_at = max(t + 1, shipment.departure_at + shift)
        self._book_plan(shipment, +1)
        self._emit_created(shipment)

    def _depart(self, shipment: _Shipment, t: int) -> None:
        rng = self.rng
        shipment.cancel_at = None
        origin = shipment.origin
        for sku, quantity in shipment.lines:
            key = (origin.site_id, sku)
            self.on_hand[key] = self.on_hand.get(key, 0) - quantity
            self.committed[key] = self.committed.get(key, 0) - quantity
        event = self._envelope("shipment.departed", shipment.origin_source)
        event["shipment_id"] = shipment.shipment_id
        event["lat"] = origin.lat
        event["lon"] = origin.lon
        self._shipment_event(shipment, event)

        shipment.path = self._path(shipment)
        shipment.lon_scale = math.cos(math.radians((origin.lat + shipment.destination.lat) / 2))
        shipment.carrier_zone = self.plan.local_zone.get(shipment.carrier.carrier_id)
        shipment.segments = self._segments(shipment)
        shipment.moved_at = t
        shipment.arrival_at = t + round(sum(segment[0] for segment in shipment.segments))
        shipment.last_eta = shipment.planned_arrival
        if t - shipment.planned_departure > self._ms(_ETA_DRIFT_H):
            shipment.eta_reason = "late departure"
        transit_ms = shipment.arrival_at - t
        if rng.random() < _p_exception(shipment.carrier):
            shipment.exception_at.append(t + round(transit_ms * rng.uniform(0.05, 0.9)))
            if rng.random() < 0.15:
                shipment.exception_at.append(t + round(transit_ms * rng.uniform(0.1, 0.95)))
                shipment.exception_at.sort()
        if rng.random() < _P_CANCEL_MOVING:
            shipment.cancel_at = t + round(transit_ms * rng.uniform(0.1, 0.8))
        self._check_eta(shipment)
        shipment.next_ping = t + max(1, int(rng.uniform(*self.ping_ms)))
        self._schedule_moving(shipment)

    def _path(self, shipment: _Shipment) -> tuple[float, float, float, float, float, float]:
        """A gently curved route: a quadratic Bezier whose control point stays in the box."""
        a, b = shipment.origin, shipment.destination
        bend = self.rng.uniform(-0.15, 0.15)
        mid_lat, mid_lon = (a.lat + b.lat) / 2, (a.lon + b.lon) / 2
        control_lat = mid_lat - bend * (b.lon - a.lon)
        control_lon = mid_lon + bend * (b.lat - a.lat)
        control_lat = min(max(control_lat, min(a.lat, b.lat)), max(a.lat, b.lat))
        control_lon = min(max(control_lon, min(a.lon, b.lon)), max(a.lon, b.lon))
        return (a.lat, a.lon, control_lat, control_lon, b.lat, b.lon)

    def _segments(self, shipment: _Shipment) -> deque[list[float]]:
        """The trip as [wall ms, km, speed] segments, planned to fit the lane, then perturbed."""
        rng = self.rng
        lane = shipment.lane
        km, planned_h = lane.distance_km, lane.planned_transit_hours
        reliability = shipment.carrier.on_time_bias
        plan: list[tuple[float, float, float]] = []  # (hours, km, speed)
        if lane.mode == "road":
            speed = _ROAD_KMH * rng.uniform(0.94, 1.08) * (1.0 - 0.05 * (1.0 - reliability))
            drive_h = km / speed
            blocks: list[float] = []
            left = drive_h
            while left > 1e-9:
                blocks.append(min(_DRIVE_BLOCK_H, left))
                left -= blocks[-1]
            stops_h = []
            driven = 0.0
            for block in blocks[:-1]:
                driven += block
                if driven >= _DRIVE_DAY_H - 1e-9:
                    stops_h.append(_DAILY_REST_H * rng.uniform(1.0, 1.1))
                    driven = 0.0
                else:
                    stops_h.append(_BREAK_H * rng.uniform(1.0, 1.2))
            nominal = km / _ROAD_KMH + _planned_stops_h(km / _ROAD_KMH)
            buffer_h = max(0.0, planned_h - nominal) * rng.uniform(0.4, 1.3)
            middle = len(blocks) // 2
            for index, block in enumerate(blocks):
                plan.append((block, km * block / drive_h, speed))
                if index < len(stops_h):
                    plan.append((stops_h[index], 0.0, 0.0))
                if index == middle and buffer_h > 0:
                    plan.append((buffer_h, 0.0, 0.0))
        else:
            speed = _LINE_KMH[lane.mode]
            moving_h = min(km / speed, planned_h)
            terminals_h = planned_h - moving_h
            speed = km / moving_h * rng.uniform(0.92, 1.08)
            plan.append((terminals_h / 2 * rng.uniform(0.7, 1.4), 0.0, 0.0))
            plan.append((km / speed, km, speed))
            plan.append((terminals_h / 2 * rng.uniform(0.7, 1.4), 0.0, 0.0))
        return deque(
            [max(1.0, round(hours * self.ms_per_h)), distance, speed]
            for hours, distance, speed in plan
            if hours > 0
        )

    def _schedule_moving(self, shipment: _Shipment) -> None:
        due = shipment.next_ping
        if shipment.arrival_at < due:
            due = shipment.arrival_at
        if shipment.exception_at and shipment.exception_at[0] < due:
            due = shipment.exception_at[0]
        if shipment.cancel_at is not None and shipment.cancel_at < due:
            due = shipment.cancel_at
        if due <= self.now:
            due = self.now + 1
        self.seq += 1
        heapq.heappush(self.heap, (due, 0, self.seq, self.moving_step, shipment))

    def _advance(self, shipment: _Shipment, t: int) -> None:
        elapsed = float(t - shipment.moved_at)
        shipment.moved_at = t
        segments = shipment.segments
        while elapsed > 0 and segments:
            segment = segments[0]
            if elapsed >= segment[0]:
                elapsed -= segment[0]
                shipment.km_done += segment[1]
                segments.popleft()
            else:
                part = segment[1] * elapsed / segment[0]
                shipment.km_done += part
                segment[1] -= part
                segment[0] -= elapsed
                elapsed = 0.0

    def _position(self, shipment: _Shipment) -> tuple[float, float, float]:
        f = shipment.km_done / shipment.lane.distance_km
        if f > 1.0:
            f = 1.0
        lat0, lon0, lat1, lon1, lat2, lon2 = shipment.path
        g = 1.0 - f
        lat = g * g * lat0 + 2 * g * f * lat1 + f * f * lat2
        lon = g * g * lon0 + 2 * g * f * lon1 + f * f * lon2
        d_lat = g * (lat1 - lat0) + f * (lat2 - lat1)
        d_lon = (g * (lon1 - lon0) + f * (lon2 - lon1)) * shipment.lon_scale
        heading = math.degrees(math.atan2(d_lon, d_lat)) % 360.0
        return round(lat, 5), round(lon, 5), round(heading, 1)

    def _moving_step(self, shipment: _Shipment, t: int) -> None:
        # The hot path: most calls only send a position ping and wait for the next one.
        self._advance(shipment, t)
        if shipment.cancel_at is not None and shipment.cancel_at <= t:
            self._cancel_moving(shipment)
            return
        while shipment.exception_at and shipment.exception_at[0] <= t:
            shipment.exception_at.pop(0)
            if t < shipment.arrival_at:
                self._exception(shipment, t)
        if t >= shipment.arrival_at:
            self._arrive(shipment, t)
            return
        if t >= shipment.next_ping:
            self._ping(shipment, t)
            shipment.next_ping = t + max(1, int(self.rng.uniform(*self.ping_ms)))
        if (
            shipment.eta_reason is not None
            or abs(shipment.arrival_at - shipment.last_eta) >= self.drift_ms
        ):
            self._check_eta(shipment)
        self._schedule_moving(shipment)

    def _ping(self, shipment: _Shipment, t: int) -> None:
        lat, lon, heading = self._position(shipment)
        speed = shipment.segments[0][2] if shipment.segments else 0.0
        if speed:
            speed = round(speed * self.rng.uniform(0.85, 1.15), 1)
        self.events += 1
        zone = shipment.carrier_zone
        value = orjson.dumps(
            {
                "event_id": f"{self.event_prefix}{self.events}",
                "event_type": "shipment.position",
                "schema_version": 1,
                "occurred_at": self.stamps.utc(t) if zone is None else self.stamps.local(t, zone),
                "source": shipment.carrier.carrier_id,
                "shipment_id": shipment.shipment_id,
                "lat": lat,
                "lon": lon,
                "speed_kmh": speed,
                "heading_deg": heading,
            }
        )
        self.out.append((SHIPMENTS, shipment.shipment_id, value))

    def _exception(self, shipment: _Shipment, t: int) -> None:
        rng = self.rng
        month = _month(t)
        weights = {
            "TRAFFIC": 35.0,
            "WEATHER": 8.0 * (4.0 if month in (11, 12, 1, 2) else 2.0 if month in (3, 10) else 1),
            "BREAKDOWN": 12.0,
            "CUSTOMS": 25.0 if _crosses_customs(shipment.origin, shipment.destination) else 0.0,
            "STRIKE": 3.0,
            "DAMAGE": 5.0,
            "OTHER": 6.0,
        }
        code = rng.choices(list(weights), weights=list(weights.values()))[0]
        low, high, messages = _EXCEPTIONS[code]
        unreliability = 1.0 + 2.0 * (1.0 - shipment.carrier.on_time_bias)
        delay_min = rng.triangular(low, high, low + (high - low) * 0.25) * unreliability
        severity = "info" if delay_min < 60 else "warning" if delay_min < 240 else "critical"
        if code == "DAMAGE":
            shipment.damaged = True
            severity = "warning"
        delay_ms = round(delay_min / 60.0 * self.ms_per_h)
        if delay_ms > 0:
            shipment.segments.appendleft([float(delay_ms), 0.0, 0.0])
            shipment.arrival_at += delay_ms
        message = rng.choice(messages)
        lat, lon, _heading = self._position(shipment)
        event = self._envelope("shipment.exception", shipment.carrier.carrier_id)
        event["shipment_id"] = shipment.shipment_id
        event["code"] = code
        event["severity"] = severity
        event["message"] = message
        event["estimated_delay_minutes"] = math.ceil(delay_ms / 60_000)
        event["lat"] = lat
        event["lon"] = lon
        self._shipment_event(shipment, event)
        shipment.eta_reason = f"{code.lower()}: {message}"

    def _check_eta(self, shipment: _Shipment) -> None:
        drift = shipment.arrival_at - shipment.last_eta
        if abs(drift) < self.drift_ms and shipment.eta_reason is None:
            return
        if abs(drift) < self.drift_ms / 2:
            shipment.eta_reason = None  # the delay was absorbed: nothing to announce
            return
        reason = shipment.eta_reason or ("slow traffic" if drift > 0 else "ahead of schedule")
        shipment.eta_reason = None
        shipment.last_eta = shipment.arrival_at
        event = self._envelope("shipment.eta_updated", shipment.carrier.carrier_id)
        event["shipment_id"] = shipment.shipment_id
        event["eta"] = self._stamp(shipment.arrival_at, shipment.carrier.carrier_id)
        event["reason"] = reason
        self._shipment_event(shipment, event)

    def _cancel_moving(self, shipment: _Shipment) -> None:
        # The contract returns the plan's lines to the origin at the cancellation.
        origin = shipment.origin.site_id
        for sku, quantity in shipment.lines:
            self.on_hand[origin, sku] = self.on_hand.get((origin, sku), 0) + quantity
            destination = (shipment.destination.site_id, sku)
            self.inbound[destination] = self.inbound.get(destination, 0) - quantity
        lat, lon, _heading = self._position(shipment)
        event = self._envelope("shipment.cancelled", shipment.carrier.carrier_id)
        event["shipment_id"] = shipment.shipment_id
        event["reason"] = self.rng.choice(_CANCEL_MOVING_REASONS)
        event["lat"] = lat
        event["lon"] = lon
        self._shipment_event(shipment, event)
        self._finish(shipment)

    def _arrive(self, shipment: _Shipment, t: int) -> None:
        shipment.segments.clear()
        destination = shipment.destination
        event = self._envelope("shipment.arrived", shipment.carrier.carrier_id)
        event["shipment_id"] = shipment.shipment_id
        event["lat"] = destination.lat
        event["lon"] = destination.lon
        self._shipment_event(shipment, event)
        self._at(t + self._ms(self.rng.triangular(*_DWELL_H)), self._deliver, shipment)

    def _deliver(self, shipment: _Shipment, t: int) -> None:
        rng = self.rng
        lines = [list(line) for line in shipment.lines]
        if rng.random() < _P_SHORTAGE:
            line = rng.choice(lines)
            line[1] -= rng.randint(1, max(1, line[1] // 10))
        damaged = 0
        if shipment.damaged or rng.random() < _P_DAMAGE:
            line = rng.choice(lines)
            damaged = min(line[1], rng.randint(1, 12))
            line[1] -= damaged
        destination = shipment.destination.site_id
        for (sku, planned), (_sku, good) in zip(shipment.lines, lines, strict=True):
            self.on_hand[destination, sku] = self.on_hand.get((destination, sku), 0) + good
            self.inbound[destination, sku] = self.inbound.get((destination, sku), 0) - planned
        event = self._envelope("shipment.delivered", _wms(destination))
        event["shipment_id"] = shipment.shipment_id
        event["lines"] = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
        if damaged:
            event["damaged_quantity"] = damaged
        self._shipment_event(shipment, event)
        self._finish(shipment)

    def _finish(self, shipment: _Shipment) -> None:
        self._at(self.now + self._ms(self.rng.uniform(0.0, _RESPAWN_H)), self._spawn, _LEAD_H)

    # --- inventory ---

    def _month_targets(self, t: int) -> None:
        month = _month(t)
        if month != self.targets_month:
            self._refresh_targets(month)

    def _next(self, task: _StockTask, t: int, handler: _Handler, priority: int = 0) -> None:
        self._at(t + task.interval_ms * self.rng.uniform(0.8, 1.2), handler, task, priority)

    def _count(self, task: _StockTask, t: int) -> None:
        on_hand = self.on_hand.get((task.site.site_id, task.sku), 0)
        self._inventory_event(task.site, task.sku, "inventory.counted", {"on_hand": on_hand})
        self._next(task, t, self._count, priority=1)

    def _produce(self, task: _StockTask, t: int) -> None:
        self._month_targets(t)
        key = (task.site.site_id, task.sku)
        hours = (t - task.last_ms) / self.ms_per_h
        task.last_ms = t
        flow = self.target[key] / _COVER_H["plant"]
        gap = self.target[key] - self._available(*key)
        quantity = round(min(max(0.0, gap), 3.0 * flow * hours + 1) * self.rng.uniform(0.9, 1.1))
        if quantity > 0:
            self.on_hand[key] = self.on_hand.get(key, 0) + quantity
            self._inventory_event(
                task.site, task.sku, "inventory.adjusted", {"delta": quantity, "reason": "produced"}
            )
        self._next(task, t, self._produce)

    def _sell(self, task: _StockTask, t: int) -> None:
        self._month_targets(t)
        key = (task.site.site_id, task.sku)
        hours = (t - task.last_ms) / self.ms_per_h
        task.last_ms = t
        wanted = self.demand.get(key, 0.0) * hours * self.rng.uniform(0.7, 1.3) + task.carry
        quantity = min(int(wanted), self._available(*key))
        task.carry = wanted - int(wanted)
        if quantity > 0:
            self.on_hand[key] = self.on_hand.get(key, 0) - quantity
            self._inventory_event(
                task.site, task.sku, "inventory.adjusted", {"delta": -quantity, "reason": "sold"}
            )
        self._next(task, t, self._sell)

    def _shrink(self, _subject: None, t: int) -> None:
        rng = self.rng
        site, sku = rng.choice(self.shrink_pairs)
        key = (site.site_id, sku)
        available = self._available(*key)
        if rng.random() < 0.6:
            delta, reason = -min(available, rng.randint(1, 8)), "scrapped"
        else:
            delta, reason = rng.randint(-12, 12), "correction"
            delta = max(delta, -available)
        if delta:
            self.on_hand[key] = self.on_hand.get(key, 0) + delta
            self._inventory_event(
                site, sku, "inventory.adjusted", {"delta": delta, "reason": reason}
            )
        self._at(t + rng.expovariate(1.0) * self.shrink_interval_ms, self._shrink, None)


def _planned_stops_h(driving_h: float) -> float:
    """Breaks and daily rests a single driver needs for `driving_h` hours at the wheel."""
    if driving_h <= _DRIVE_BLOCK_H:
        return 0.0
    daily_rests = math.ceil(driving_h / _DRIVE_DAY_H) - 1 if driving_h > _DRIVE_DAY_H else 0
    breaks = math.ceil(driving_h / _DRIVE_BLOCK_H) - 1 - daily_rests
    return breaks * _BREAK_H + daily_rests * _DAILY_REST_H


# --- Fault injection ---


def inject_faults(
    messages: Iterable[SimMessage], settings: SimulationSettings
) -> Iterator[SimMessage]:
    """Wrap a clean, ordered stream with duplicates, late arrivals and malformed messages.

    Per clean message, independently, with its own random stream derived from the seed:
    with probability `out_of_order_rate` it is held back 1-90 simulated minutes (its bytes,
    and so `occurred_at`, unchanged); with `duplicate_rate` the same bytes are sent again
    0.5-30 simulated minutes after it; with `malformed_rate` an extra message that breaks the
    contract follows it. The output stays in non-decreasing `emit_at` order.
    """
    rng = random.Random(f"tiretrack-faults-{settings.seed}")
    ms_per_minute = 60_000 / settings.time_scale
    pending: list[tuple[datetime, int, SimMessage]] = []
    seq = 0

    def later(message: SimMessage, minutes: tuple[float, float]) -> SimMessage:
        delay = max(1, round(rng.uniform(*minutes) * ms_per_minute))
        return SimMessage(message.family, message.key, message.value, message.emit_at + delay * _MS)

    for message in messages:
        while pending and pending[0][0] <= message.emit_at:
            yield heapq.heappop(pending)[2]
        sent = message
        if rng.random() < settings.out_of_order_rate:
            sent = later(message, (1.0, 90.0))
            seq += 1
            heapq.heappush(pending, (sent.emit_at, seq, sent))
        else:
            yield message
        if rng.random() < settings.duplicate_rate:
            copy = later(sent, (0.5, 30.0))
            seq += 1
            heapq.heappush(pending, (copy.emit_at, seq, copy))
        if rng.random() < settings.malformed_rate:
            yield _malform(message, rng)
    while pending:
        yield heapq.heappop(pending)[2]


def _malform(message: SimMessage, rng: random.Random) -> SimMessage:
    """A message that breaks the contract, derived from a valid one (same key and time)."""
    event: dict[str, Any] = orjson.loads(message.value)
    family = message.family
    shipment = family == SHIPMENTS
    kinds: list[str] = [
        "truncated",
        "not_object",
        "wrong_type",
        "missing",
        "null",
        "naive_time",
        "version_2",
        "version_string",
        "wrong_family",
        "out_of_range",
        "unknown_type",
        "bad_value",
        "nan",
        "long_id",
        "bad_utf8",
    ]
    if shipment:
        kinds.append("lat_without_lon")
    kind = rng.choice(kinds)
    # Half keep the valid event's id: a consumer must not let a rejection reserve it.
    if rng.random() < 0.5:
        event["event_id"] = f"{event['event_id']}-bad"
    value: bytes | None = None
    if kind == "truncated":
        value = message.value[: rng.randint(1, len(message.value) - 1)]
    elif kind == "not_object":
        value = orjson.dumps([event])
    elif kind == "wrong_type":
        field_name, bad = _wrong_type(event, rng)
        event[field_name] = bad
    elif kind in ("missing", "null"):
        field_name = rng.choice(_required_fields(event))
        if kind == "missing":
            del event[field_name]
        else:
            event[field_name] = None
    elif kind == "naive_time":
        event["occurred_at"] = _strip_offset(event["occurred_at"])
    elif kind == "version_2":
        event["schema_version"] = 2
    elif kind == "version_string":
        event["schema_version"] = rng.choice(["1", 1.0, True])
    elif kind == "wrong_family":
        family = INVENTORY if shipment else SHIPMENTS
    elif kind == "out_of_range":
        if shipment:
            event["lat"], event["lon"] = rng.choice([(91.5, 10.0), (45.0, 181.0), (-95.0, 0.0)])
        elif "on_hand" in event:
            event["on_hand"] = -rng.randint(1, 50)
        else:
            event["delta"] = 0
    elif kind == "unknown_type":
        event["event_type"] = rng.choice(
            ["shipment.teleported", "inventory.recounted", "Shipment.Created", "", "created"]
        )
    elif kind == "bad_value":
        field_name, bad = _bad_value(event, rng)
        event[field_name] = bad
    elif kind == "nan":
        value = orjson.dumps(event).replace(b'"schema_version":1', b'"schema_version":NaN', 1)
    elif kind == "long_id":
        event["event_id"] = rng.choice(["", "x" * 65])
    elif kind == "bad_utf8":
        value = orjson.dumps(event).replace(b'"source":"', b'"source":"\xff\xfe', 1)
    else:  # lat_without_lon
        event.pop("lon", None)
        event["lat"] = event.get("lat", 48.1)
    if value is None:
        value = orjson.dumps(event)
    return SimMessage(family, message.key, value, message.emit_at)


def _strip_offset(stamp: str) -> str:
    if stamp.endswith("Z"):
        return stamp[:-1]
    return stamp[:-6]


def _required_fields(event: dict[str, Any]) -> list[str]:
    base = ["event_id", "event_type", "schema_version", "occurred_at", "source"]
    event_type = event["event_type"]
    specific = {
        "shipment.created": [
            "origin_site_id",
            "destination_site_id",
            "carrier_id",
            "mode",
            "planned_departure",
            "planned_arrival",
            "lines",
        ],
        "shipment.position": ["lat", "lon"],
        "shipment.eta_updated": ["eta"],
        "shipment.exception": ["code", "severity"],
        "shipment.delivered": ["lines"],
        "inventory.counted": ["sku", "on_hand"],
        "inventory.adjusted": ["sku", "delta", "reason"],
    }.get(event_type, [])
    key = ["shipment_id"] if event_type.startswith("shipment.") else ["site_id"]
    return base + key + specific


def _wrong_type(event: dict[str, Any], rng: random.Random) -> tuple[str, Any]:
    event_type = event["event_type"]
    options: list[tuple[str, Any]] = [
        ("occurred_at", 1_790_000_000_000),
        ("event_id", 12345),
        ("source", ["plant"]),
    ]
    if event_type == "shipment.position":
        options += [("lat", str(event["lat"])), ("speed_kmh", "fast")]
    elif event_type == "shipment.created":
        lines = [dict(line) for line in event["lines"]]
        lines[0]["quantity"] = str(lines[0]["quantity"])
        options += [("lines", lines), ("lines", {"sku": "x", "quantity": 1})]
    elif event_type == "shipment.exception":
        options.append(("estimated_delay_minutes", event["estimated_delay_minutes"] + 0.5))
    elif event_type == "inventory.counted":
        options.append(("on_hand", event["on_hand"] + 0.5))
    elif event_type == "inventory.adjusted":
        options.append(("delta", str(event["delta"])))
    return rng.choice(options)


def _bad_value(event: dict[str, Any], rng: random.Random) -> tuple[str, Any]:
    event_type = event["event_type"]
    options: list[tuple[str, Any]] = [("occurred_at", "26/11/2026 10:15"), ("schema_version", 0)]
    if event_type == "shipment.created":
        lines = [dict(line) for line in event["lines"]]
        lines[0]["quantity"] = 0
        options += [("mode", "air"), ("lines", []), ("lines", lines)]
    elif event_type == "shipment.position":
        options += [("heading_deg", 400.0), ("speed_kmh", -5.0)]
    elif event_type == "shipment.exception":
        options += [("code", "ALIENS"), ("severity", "fatal")]
    elif event_type == "shipment.delivered":
        options.append(("damaged_quantity", -1))
    elif event_type == "inventory.adjusted":
        options.append(("reason", "stolen"))
    elif event_type == "inventory.counted":
        options.append(("on_hand", -1))
    return rng.choice(options)
