"""The simulator's stream: deterministic, ordered, valid per the contract, and physically sane."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from ingest.contract import INVENTORY, SHIPMENTS, Rejected, validate
from ingest.errors import ConfigError
from ingest.network import Network, load_network
from ingest.simulator import (
    INVENTORY_SHARE,
    SimMessage,
    SimulationSettings,
    fleet_size,
    inject_faults,
    simulate,
)

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
LIFECYCLE = ("shipment.created", "shipment.departed", "shipment.arrived", "shipment.delivered")


@pytest.fixture(scope="module")
def network() -> Network:
    return load_network()


def run(network: Network, **overrides: Any) -> list[SimMessage]:
    settings: dict[str, Any] = {"seed": 42, "rate": 200.0, "time_scale": 3600.0, "start": START}
    settings.update(overrides)
    return list(simulate(SimulationSettings(**settings), network))


@pytest.fixture(scope="module")
def clean(network: Network) -> list[SimMessage]:
    """About 14 simulated days at 200 messages per wall second: 60k messages."""
    return run(network, duration_s=300.0)


@pytest.fixture(scope="module")
def events(clean: list[SimMessage]) -> list[tuple[SimMessage, dict[str, Any]]]:
    return [(message, orjson.loads(message.value)) for message in clean]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_same_seed_same_bytes_other_seed_other_bytes(network: Network) -> None:
    first = run(network, max_events=5000)
    again = run(network, max_events=5000)
    other = run(network, seed=43, max_events=5000)
    assert first == again
    assert [m.value for m in first] != [m.value for m in other]
    assert len(first) == 5000


def test_another_start_gives_other_ids(network: Network) -> None:
    first = run(network, max_events=200)
    later = run(network, max_events=200, start=START + timedelta(hours=1))
    ids = {orjson.loads(m.value)["event_id"] for m in first}
    assert ids.isdisjoint(orjson.loads(m.value)["event_id"] for m in later)


def test_emit_at_is_ordered_aware_utc_and_bounded(clean: list[SimMessage]) -> None:
    assert clean[0].emit_at == START
    assert all(a.emit_at <= b.emit_at for a, b in itertools.pairwise(clean))
    assert all(m.emit_at.utcoffset() == timedelta(0) for m in clean)
    assert clean[-1].emit_at <= START + timedelta(seconds=300)


def test_every_message_is_a_valid_contract_event(
    events: list[tuple[SimMessage, dict[str, Any]]],
) -> None:
    event_ids = set()
    for message, event in events:
        validated = validate(message.family, message.value)
        assert validated.occurred_at == message.emit_at  # on time: occurred_at == emit_at
        assert set(event) >= {"event_id", "event_type", "schema_version", "occurred_at", "source"}
        assert event["schema_version"] == 1
        if message.family == SHIPMENTS:
            assert event["event_type"].startswith("shipment.")
            assert message.key == event["shipment_id"]
        else:
            assert message.family == INVENTORY
            assert event["event_type"].startswith("inventory.")
            assert message.key == event["site_id"]
        event_ids.add(event["event_id"])
    assert len(event_ids) == len(events)


def test_timestamps_have_millisecond_precision_and_mixed_offsets(
    events: list[tuple[SimMessage, dict[str, Any]]],
) -> None:
    offsets: Counter[str] = Counter()
    for _message, event in events:
        stamp = event["occurred_at"]
        assert stamp[19] == "." and stamp[23] in "Z+", stamp  # 2026-11-26T10:15:02.123Z
        offsets[stamp[23:]] += 1
    assert offsets["Z"] > len(events) / 2
    assert offsets["+01:00"] > 0  # central European winter time, same instant


def test_event_mix(events: list[tuple[SimMessage, dict[str, Any]]]) -> None:
    types = Counter(event["event_type"] for _message, event in events)
    assert types["shipment.position"] > 0.7 * len(events)  # pings dominate
    inventory = types["inventory.counted"] + types["inventory.adjusted"]
    assert inventory == pytest.approx(INVENTORY_SHARE * len(events), rel=0.5)
    for event_type in (*LIFECYCLE, "shipment.eta_updated", "shipment.exception"):
        assert types[event_type] > 0, event_type
    assert 0 < types["shipment.cancelled"] < 0.1 * types["shipment.created"]
    reasons = Counter(e["reason"] for _m, e in events if e["event_type"] == "inventory.adjusted")
    assert set(reasons) == {"produced", "sold", "scrapped", "correction"}
    assert reasons["produced"] > reasons["scrapped"] and reasons["sold"] > reasons["correction"]


def by_shipment(events: list[tuple[SimMessage, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    shipments: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message, event in events:
        if message.family == SHIPMENTS:
            shipments[event["shipment_id"]].append(event)
    return shipments


def test_lifecycle_order_per_shipment(events: list[tuple[SimMessage, dict[str, Any]]]) -> None:
    complete = 0
    for shipment_id, history in by_shipment(events).items():
        types = [event["event_type"] for event in history]
        times = [parse_time(event["occurred_at"]) for event in history]
        assert times == sorted(times), shipment_id
        assert types[0] == "shipment.created", shipment_id
        firsts = [types.index(t) for t in LIFECYCLE if t in types]
        assert firsts == sorted(firsts), (shipment_id, types)
        present = [t in types for t in LIFECYCLE]
        assert present == sorted(present, reverse=True), (shipment_id, types)  # no gaps
        if "shipment.cancelled" in types:
            assert types[-1] == "shipment.cancelled" and "shipment.delivered" not in types
        if "shipment.delivered" in types:
            assert types[-1] == "shipment.delivered" and types.count("shipment.delivered") == 1
            complete += 1
        moving = types[types.index("shipment.departed") :] if "shipment.departed" in types else []
        assert "shipment.created" not in moving, "re-plans happen before departure"
    assert complete > 100


def test_plans_are_consistent_with_the_network(
    network: Network, events: list[tuple[SimMessage, dict[str, Any]]]
) -> None:
    replans = 0
    loads: dict[str, list[int]] = defaultdict(list)
    for history in by_shipment(events).values():
        plans = [e for e in history if e["event_type"] == "shipment.created"]
        replans += len(plans) > 1
        for plan in plans:
            lane = next(
                lane
                for lane in network.lanes.values()
                if (lane.origin_site_id, lane.destination_site_id, lane.carrier_id, lane.mode)
                == (
                    plan["origin_site_id"],
                    plan["destination_site_id"],
                    plan["carrier_id"],
                    plan["mode"],
                )
            )
            departure = parse_time(plan["planned_departure"])
            arrival = parse_time(plan["planned_arrival"])
            transit = timedelta(hours=lane.planned_transit_hours / 3600.0)  # time_scale 3600
            assert arrival - departure == pytest.approx(transit, abs=timedelta(milliseconds=2))
            assert departure > parse_time(plan["occurred_at"])
            assert 1 <= len(plan["lines"]) <= 4
            assert all(line["sku"] in network.skus for line in plan["lines"])
            segments = {network.skus[line["sku"]].segment for line in plan["lines"]}
            if segments == {"passenger"}:
                loads[lane.mode].append(sum(line["quantity"] for line in plan["lines"]))
    assert replans > 0
    assert 250 <= statistics.median(loads["road"]) <= 1200


def test_positions_stay_between_origin_and_destination(
    network: Network, events: list[tuple[SimMessage, dict[str, Any]]]
) -> None:
    checked = 0
    for history in by_shipment(events).values():
        plan = history[0]
        a = network.sites[plan["origin_site_id"]]
        b = network.sites[plan["destination_site_id"]]
        for event in history:
            if "lat" not in event:
                continue
            assert min(a.lat, b.lat) <= event["lat"] <= max(a.lat, b.lat), event
            assert min(a.lon, b.lon) <= event["lon"] <= max(a.lon, b.lon), event
            if event["event_type"] == "shipment.departed":
                assert (event["lat"], event["lon"]) == (a.lat, a.lon)
            if event["event_type"] == "shipment.arrived":
                assert (event["lat"], event["lon"]) == (b.lat, b.lon)
            if event["event_type"] == "shipment.position":
                assert 0 <= event["speed_kmh"] <= 130 and 0 <= event["heading_deg"] <= 360
                checked += 1
    assert checked > 1000


def test_position_pings_every_five_to_ten_simulated_minutes(
    events: list[tuple[SimMessage, dict[str, Any]]],
) -> None:
    gaps = []
    for history in by_shipment(events).values():
        pings = [
            parse_time(e["occurred_at"]) for e in history if e["event_type"] == "shipment.position"
        ]
        gaps += [(b - a).total_seconds() * 3600.0 / 60.0 for a, b in itertools.pairwise(pings)]
    assert min(gaps) >= 5.0 - 0.1 and max(gaps) <= 10.0 + 0.1  # simulated minutes


def test_exceptions_delay_the_arrival(events: list[tuple[SimMessage, dict[str, Any]]]) -> None:
    # At time_scale 3600 one wall second is one simulated hour.
    critical, smooth = [], []
    exceptions = announced = 0
    for history in by_shipment(events).values():
        types = [e["event_type"] for e in history]
        eta_times = {e["occurred_at"] for e in history if e["event_type"] == "shipment.eta_updated"}
        found = [e for e in history if e["event_type"] == "shipment.exception"]
        exceptions += len(found)
        announced += sum(e["occurred_at"] in eta_times for e in found)
        if "shipment.arrived" not in types:
            continue
        plan = [e for e in history if e["event_type"] == "shipment.created"][-1]
        arrived = history[types.index("shipment.arrived")]
        late = parse_time(arrived["occurred_at"]) - parse_time(plan["planned_arrival"])
        if any(e["severity"] == "critical" for e in found):
            critical.append(late.total_seconds())
        elif not found:
            smooth.append(late.total_seconds())
    assert statistics.mean(critical) > statistics.mean(smooth) + 3.0  # simulated hours
    assert announced > 0.6 * exceptions  # the carrier sends a new ETA with the exception


def test_deliveries_report_shortages_and_damage(
    events: list[tuple[SimMessage, dict[str, Any]]],
) -> None:
    short = damaged = 0
    for history in by_shipment(events).values():
        delivered = [e for e in history if e["event_type"] == "shipment.delivered"]
        if not delivered:
            continue
        plan = {
            line["sku"]: line["quantity"]
            for line in [e for e in history if e["event_type"] == "shipment.created"][-1]["lines"]
        }
        got = {line["sku"]: line["quantity"] for line in delivered[0]["lines"]}
        assert got.keys() == plan.keys()
        assert all(0 <= got[sku] <= plan[sku] for sku in plan)
        missing = sum(plan.values()) - sum(got.values())
        assert delivered[0].get("damaged_quantity", 0) <= missing
        short += missing > 0
        damaged += "damaged_quantity" in delivered[0]
    assert short > 0 and damaged > 0


def test_counts_match_the_stock_derived_by_the_contract_rules(
    events: list[tuple[SimMessage, dict[str, Any]]],
) -> None:
    """Replaying the contract's inventory rules over the stream reproduces every count."""
    plans: dict[str, dict[str, Any]] = {}
    departed: dict[str, datetime] = {}
    delivered: dict[str, dict[str, Any]] = {}
    cancelled: dict[str, datetime] = {}
    changes: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    counts: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for _message, event in events:
        kind, at = event["event_type"], parse_time(event["occurred_at"])
        if kind == "shipment.created":
            plans[event["shipment_id"]] = event
        elif kind == "shipment.departed":
            departed.setdefault(event["shipment_id"], at)
        elif kind == "shipment.delivered":
            delivered.setdefault(event["shipment_id"], event)
        elif kind == "shipment.cancelled":
            cancelled.setdefault(event["shipment_id"], at)
        elif kind == "inventory.adjusted":
            changes[event["site_id"], event["sku"]].append((at, event["delta"]))
        elif kind == "inventory.counted":
            counts[event["site_id"], event["sku"]].append((at, event["on_hand"]))
    for shipment_id, plan in plans.items():
        origin, destination = plan["origin_site_id"], plan["destination_site_id"]
        if shipment_id in departed:
            for line in plan["lines"]:
                changes[origin, line["sku"]].append((departed[shipment_id], -line["quantity"]))
                if shipment_id in cancelled:
                    back = max(departed[shipment_id], cancelled[shipment_id])
                    changes[origin, line["sku"]].append((back, line["quantity"]))
        if shipment_id in delivered:
            at = parse_time(delivered[shipment_id]["occurred_at"])
            for line in delivered[shipment_id]["lines"]:
                changes[destination, line["sku"]].append((at, line["quantity"]))
    checked = 0
    for key, series in counts.items():
        assert all(on_hand >= 0 for _at, on_hand in series), key
        for (t0, v0), (t1, v1) in itertools.pairwise(series):
            assert v1 == v0 + sum(d for at, d in changes[key] if t0 < at <= t1), (key, t1)
            checked += 1
    assert checked > 1000


def test_rate_is_respected_after_warm_up(network: Network) -> None:
    # At time_scale 3600 a shipment lifecycle (~20 simulated hours) lasts ~20 wall seconds.
    messages = run(network, rate=100.0, duration_s=400.0)
    window = [m for m in messages if m.emit_at >= START + timedelta(seconds=100)]
    assert len(window) / 300.0 == pytest.approx(100.0, rel=0.12)


def test_rate_at_the_default_time_scale(network: Network) -> None:
    settings = SimulationSettings(rate=20.0, time_scale=60.0, start=START, duration_s=3000.0)
    assert fleet_size(settings, network) > 100
    messages = list(simulate(settings, network))
    window = [m for m in messages if m.emit_at >= START + timedelta(seconds=1500)]
    assert len(window) / 1500.0 == pytest.approx(20.0, rel=0.12)


def test_fleet_size_follows_rate_and_time_scale(network: Network) -> None:
    base = SimulationSettings(start=START)
    double_rate = SimulationSettings(rate=100.0, start=START)
    faster = SimulationSettings(time_scale=120.0, start=START)
    assert fleet_size(double_rate, network) == pytest.approx(2 * fleet_size(base, network), abs=1)
    assert fleet_size(faster, network) == pytest.approx(fleet_size(base, network) / 2, abs=1)


def test_winter_tires_sell_more_in_winter(network: Network) -> None:
    def winter_share(month: int) -> float:
        start = datetime(2026, month, 10, tzinfo=UTC)
        sold: Counter[str] = Counter()
        for message in run(network, start=start, rate=400.0, duration_s=120.0):
            event = orjson.loads(message.value)
            if event.get("reason") == "sold":
                sold[network.skus[event["sku"]].season] -= event["delta"]
        return sold["winter"] / sum(sold.values())

    assert winter_share(11) > 2 * winter_share(7)


def test_limits_and_laziness(network: Network) -> None:
    assert len(run(network, max_events=1234)) == 1234
    assert run(network, max_events=0) == []
    endless = simulate(SimulationSettings(start=START, rate=1000.0, time_scale=1e6), network)
    assert len(list(itertools.islice(endless, 20_000))) == 20_000


def test_default_start_is_now(network: Network) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = next(simulate(SimulationSettings(), network))
    assert before <= first.emit_at <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"rate": 0.0},
        {"time_scale": -1.0},
        {"start": datetime(2026, 1, 1)},
        {"duplicate_rate": 1.5},
        {"malformed_rate": -0.1},
        {"max_events": -1},
    ],
)
def test_invalid_settings_are_config_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimulationSettings(**overrides)


def test_start_with_an_offset_is_the_same_instant(network: Network) -> None:
    paris = START.astimezone(timezone(timedelta(hours=1)))
    assert run(network, start=paris, max_events=300) == run(network, max_events=300)


# --- fault injection ---


@pytest.fixture(scope="module")
def faulty(network: Network) -> list[SimMessage]:
    return run(
        network,
        seed=5,
        max_events=60_000,
        duplicate_rate=0.05,
        out_of_order_rate=0.04,
        malformed_rate=0.03,
    )


def test_fault_injection_fractions(faulty: list[SimMessage]) -> None:
    assert all(a.emit_at <= b.emit_at for a, b in itertools.pairwise(faulty))
    seen: set[bytes] = set()
    duplicates = late = malformed = valid = 0
    for message in faulty:
        try:
            event = validate(message.family, message.value)
        except Rejected:
            malformed += 1
            continue
        valid += 1
        assert event.occurred_at <= message.emit_at
        if message.value in seen:
            duplicates += 1
            continue
        seen.add(message.value)
        late += event.occurred_at < message.emit_at
    originals = valid - duplicates
    assert duplicates / originals == pytest.approx(0.05, abs=0.006)
    assert late / originals == pytest.approx(0.04, abs=0.006)
    assert malformed / originals == pytest.approx(0.03, abs=0.005)


def test_held_back_messages_really_arrive_out_of_order(faulty: list[SimMessage]) -> None:
    passed = 0
    newest = datetime.min.replace(tzinfo=UTC)
    for message in faulty:
        try:
            occurred_at = validate(message.family, message.value).occurred_at
        except Rejected:
            continue
        passed += occurred_at < newest
        newest = max(newest, occurred_at)
    assert passed > 500


def test_without_faults_the_wrapper_changes_nothing(network: Network) -> None:
    settings = SimulationSettings(start=START, rate=200.0, time_scale=3600.0, max_events=3000)
    messages = list(simulate(settings, network))
    assert list(inject_faults(iter(messages), settings)) == messages


def test_every_kind_of_malformed_message_is_rejected(network: Network) -> None:
    messages = run(network, seed=9, max_events=20_000, malformed_rate=1.0)
    reasons: Counter[str] = Counter()
    texts = ""
    originals = 0
    for clean, bad in itertools.pairwise(messages):
        try:
            validate(clean.family, clean.value)
        except Rejected:
            continue
        originals += 1
        assert (bad.key, bad.emit_at) == (clean.key, clean.emit_at)
        with pytest.raises(Rejected) as caught:
            validate(bad.family, bad.value)
        reasons[caught.value.reason.split(" - at")[0][:40]] += 1
        texts += caught.value.reason + " | "
    assert originals == pytest.approx(10_000, abs=1)
    assert len(reasons) >= 20  # JSON, types, missing, null, offsets, versions, family, ranges...
    for expected in ("invalid JSON", "not a JSON object", "unsupported schema_version 2"):
        assert expected in texts
    assert "not allowed on the" in texts  # wrong family
    assert "with a timezone component" in texts  # timestamp without offset
