"""Hand-computed checks of the test oracle (tests/oracle.py) and of the scenario builders."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import (
    IN_TRANSIT_COLUMNS,
    INVENTORY_COLUMNS,
    SHIPMENT_COLUMNS,
    contract_violation,
    derive_in_transit,
    derive_inventory,
    derive_shipments,
    on_time_rate,
    otif,
)
from tests.scenarios import (
    BASE,
    GHOST,
    INVENTORY,
    PLANT,
    SHIPMENTS,
    Scenario,
    contract_scenario,
    random_scenario,
)
from tests.scenarios import DC1 as DC_HAM
from tests.scenarios import DC2 as DC_LYS
from tests.scenarios import A as SKU_A
from tests.scenarios import B as SKU_B
from tests.scenarios import at as scenario_at

_ids = itertools.count()


def t(minutes: float, ms: int = 0) -> datetime:
    return BASE + timedelta(minutes=minutes, milliseconds=ms)


def iso(instant: datetime, offset_minutes: int = 0) -> str:
    return instant.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


def ev(event_type: str, when: datetime, event_id: str | None = None, **fields) -> dict:
    event = {
        "event_id": event_id or f"e{next(_ids):06d}",
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": iso(when),
        "source": "unit-test",
    }
    event.update({k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items()})
    return event


def sh(kind: str, sid: str, when: datetime, event_id: str | None = None, **fields) -> dict:
    return ev(f"shipment.{kind}", when, event_id, shipment_id=sid, **fields)


def created(
    sid: str,
    when: datetime,
    lines=(("A", 10),),
    origin="P",
    dest="D",
    pd: float = 60,
    pa: float = 600,
    event_id: str | None = None,
    **fields,
) -> dict:
    return sh(
        "created",
        sid,
        when,
        event_id,
        origin_site_id=origin,
        destination_site_id=dest,
        carrier_id="CARR",
        mode="road",
        planned_departure=t(pd),
        planned_arrival=t(pa),
        lines=[{"sku": s, "quantity": q} for s, q in lines],
        **fields,
    )


def delivered(sid: str, when: datetime, lines, event_id: str | None = None, **fields) -> dict:
    return sh(
        "delivered",
        sid,
        when,
        event_id,
        lines=[{"sku": s, "quantity": q} for s, q in lines],
        **fields,
    )


def counted(site: str, sku: str, when: datetime, on_hand: int, event_id: str | None = None):
    return ev("inventory.counted", when, event_id, site_id=site, sku=sku, on_hand=on_hand)


def adjusted(site: str, sku: str, when: datetime, delta: int, reason: str = "correction"):
    return ev("inventory.adjusted", when, site_id=site, sku=sku, delta=delta, reason=reason)


def row(events: list[dict], as_of: datetime, sid: str = "S1", tolerance: float = 60.0) -> dict:
    rows = {r["shipment_id"]: r for r in derive_shipments(events, as_of, tolerance)}
    return rows[sid]


def stock(events: list[dict], as_of: datetime) -> dict[tuple[str, str], int]:
    return {(r["site_id"], r["sku"]): r["on_hand"] for r in derive_inventory(events, as_of)}


def transit(events: list[dict], as_of: datetime) -> dict[tuple[str, str, str], int]:
    return {
        (r["origin_site_id"], r["destination_site_id"], r["sku"]): r["in_transit"]
        for r in derive_in_transit(events, as_of)
    }


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("kinds", "status"),
    [
        (["created"], "PLANNED"),
        (["created", "departed"], "IN_TRANSIT"),
        (["created", "departed", "arrived"], "ARRIVED"),
        (["created", "departed", "arrived", "cancelled"], "CANCELLED"),
        (["created", "departed", "arrived", "cancelled", "delivered"], "DELIVERED"),
        (["created", "cancelled"], "CANCELLED"),
        (["created", "delivered"], "DELIVERED"),
        (["departed"], "IN_TRANSIT"),
        (["arrived", "departed"], "ARRIVED"),
        (["position"], None),
        (["eta_updated"], None),
        (["exception"], None),
        (["position", "eta_updated", "exception"], None),
    ],
)
def test_status_first_rule_that_applies(kinds: list[str], status: str | None) -> None:
    builders = {
        "created": lambda m: created("S1", t(m)),
        "departed": lambda m: sh("departed", "S1", t(m)),
        "arrived": lambda m: sh("arrived", "S1", t(m)),
        "cancelled": lambda m: sh("cancelled", "S1", t(m)),
        "delivered": lambda m: delivered("S1", t(m), [("A", 10)]),
        "position": lambda m: sh("position", "S1", t(m), lat=1.0, lon=2.0),
        "eta_updated": lambda m: sh("eta_updated", "S1", t(m), eta=t(500)),
        "exception": lambda m: sh("exception", "S1", t(m), code="OTHER", severity="info"),
    }
    # Times in reverse of the list's order: status depends on presence, not on sequence.
    events = [builders[k](100 - 10 * i) for i, k in enumerate(kinds)]
    assert row(events, t(1000))["status"] == status


def test_cancellation_after_delivery_does_not_undo_it() -> None:
    events = [
        created("S1", t(0)),
        sh("departed", "S1", t(10)),
        delivered("S1", t(100), [("A", 10)]),
        sh("cancelled", "S1", t(200)),
    ]
    assert row(events, t(150))["status"] == "DELIVERED"
    assert row(events, t(250))["status"] == "DELIVERED"
    assert row(events, t(250))["delay_minutes"] == -500.0  # arrived (delivered) 100, planned 600
    # stock: -10 at P at 10, +10 at D at 100, no return
    assert stock(events, t(250)) == {("P", "A"): -10, ("D", "A"): 10}


def test_cancelled_then_delivered_becomes_delivered_at_delivery() -> None:
    events = [
        created("S1", t(0)),
        sh("departed", "S1", t(10)),
        sh("cancelled", "S1", t(50)),
        delivered("S1", t(100), [("A", 9)]),
    ]
    assert row(events, t(99))["status"] == "CANCELLED"
    assert row(events, t(99))["delay_minutes"] is None
    assert stock(events, t(99)) == {("P", "A"): 0}  # left at 10, returned at 50
    assert transit(events, t(99)) == {}
    assert row(events, t(100))["status"] == "DELIVERED"
    assert stock(events, t(100)) == {("P", "A"): -10, ("D", "A"): 9}


def test_replan_never_moves_back_to_planned_and_replaces_the_plan() -> None:
    events = [
        created("S1", t(0), lines=[("A", 10)], dest="D1", pa=300),
        sh("departed", "S1", t(30)),
        created("S1", t(60), lines=[("A", 4), ("B", 5)], dest="D2", pa=400),
    ]
    before, after = row(events, t(59)), row(events, t(60))
    assert (before["status"], before["destination_site_id"], before["planned_quantity"]) == (
        "IN_TRANSIT",
        "D1",
        10,
    )
    assert (after["status"], after["destination_site_id"], after["planned_quantity"]) == (
        "IN_TRANSIT",
        "D2",
        9,
    )
    assert after["planned_arrival"] == t(400)
    # the departure movement follows the plan as of T, retroactively
    assert stock(events, t(59)) == {("P", "A"): -10}
    assert stock(events, t(60)) == {("P", "A"): -4, ("P", "B"): -5}
    assert transit(events, t(60)) == {("P", "D2", "A"): 4, ("P", "D2", "B"): 5}


def test_late_older_created_does_not_replace_the_latest_plan() -> None:
    events = [created("S1", t(50), dest="NEW"), created("S1", t(10), dest="OLD")]
    assert row(events, t(100))["destination_site_id"] == "NEW"
    assert row(events, t(20))["destination_site_id"] == "OLD"


def test_created_tie_greater_event_id_wins() -> None:
    events = [
        created("S1", t(10), dest="Z-FIRST-BY-NAME", event_id="crt-b"),
        created("S1", t(10), dest="LOSER", event_id="crt-a"),
    ]
    assert row(events, t(10))["destination_site_id"] == "Z-FIRST-BY-NAME"
    assert row(list(reversed(events)), t(10))["destination_site_id"] == "Z-FIRST-BY-NAME"


# --------------------------------------------------------------------------- eta


def test_eta_defaults_to_planned_arrival() -> None:
    assert row([created("S1", t(0), pa=300)], t(10))["eta"] == t(300)


def test_eta_after_created_wins_and_replan_supersedes_it() -> None:
    events = [
        created("S1", t(0), pa=300),
        sh("eta_updated", "S1", t(20), eta=t(350)),
        created("S1", t(40), pa=400),
    ]
    assert row(events, t(30))["eta"] == t(350)
    assert row(events, t(40))["eta"] == t(400)  # re-plan supersedes the older eta
    events.append(sh("eta_updated", "S1", t(50), eta=t(420)))
    assert row(events, t(50))["eta"] == t(420)


def test_eta_at_the_created_instant_counts_and_before_it_does_not() -> None:
    same = [created("S1", t(20), pa=200), sh("eta_updated", "S1", t(20), eta=t(260))]
    assert row(same, t(20))["eta"] == t(260)
    before = [sh("eta_updated", "S2", t(10), eta=t(999)), created("S2", t(20), pa=200)]
    assert row(before, t(15), "S2")["eta"] == t(999)  # no plan yet: the eta itself
    assert row(before, t(15), "S2")["status"] is None
    assert row(before, t(20), "S2")["eta"] == t(200)


def test_eta_tie_greater_event_id_wins() -> None:
    events = [
        created("S1", t(0), pa=300),
        sh("eta_updated", "S1", t(80), "eta-b", eta=t(450)),
        sh("eta_updated", "S1", t(80), "eta-a", eta=t(420)),
    ]
    assert row(events, t(100))["eta"] == t(450)


def test_eta_without_plan() -> None:
    r = row([sh("eta_updated", "S1", t(100), eta=t(900))], t(100))
    assert (r["status"], r["eta"], r["planned_arrival"], r["delay_minutes"], r["is_late"]) == (
        None,
        t(900),
        None,
        None,
        None,
    )


# --------------------------------------------------------------------------- delay


def test_delay_early_arrival_is_negative() -> None:
    r = row([created("S1", t(0), pa=300), sh("arrived", "S1", t(270))], t(1000))
    assert (r["delay_minutes"], r["is_late"]) == (-30.0, False)


def test_delay_arrival_from_delivered_when_no_arrived() -> None:
    events = [created("S1", t(0), pa=300), delivered("S1", t(390), [("A", 10)])]
    r = row(events, t(1000))
    assert (r["arrived_at"], r["departed_at"], r["delay_minutes"], r["is_late"]) == (
        t(390),
        None,
        90.0,
        True,
    )


def test_delay_open_shipment_uses_max_of_eta_and_as_of() -> None:
    events = [created("S1", t(0), pa=300), sh("departed", "S1", t(60))]
    assert row(events, t(100))["delay_minutes"] == 0.0  # not yet due
    assert row(events, t(345))["delay_minutes"] == 45.0  # T past plan
    events.append(sh("eta_updated", "S1", t(120), eta=t(400)))
    assert row(events, t(200))["delay_minutes"] == 100.0  # eta past plan
    assert row(events, t(450))["delay_minutes"] == 150.0  # T past eta
    early = [created("S2", t(0), pa=300), sh("eta_updated", "S2", t(10), eta=t(250))]
    assert row(early, t(20), "S2")["delay_minutes"] == 0.0  # negative clamps to 0 while open


def test_delay_is_null_when_cancelled_or_without_plan() -> None:
    cancelled = [
        created("S1", t(0), pa=300),
        sh("arrived", "S1", t(500)),
        sh("cancelled", "S1", t(510)),
    ]
    r = row(cancelled, t(1000))
    assert (r["delay_minutes"], r["is_late"], r["arrived_at"]) == (None, None, t(500))
    no_plan = [sh("departed", "S2", t(0)), sh("arrived", "S2", t(500))]
    r = row(no_plan, t(1000), "S2")
    assert (r["delay_minutes"], r["is_late"], r["planned_quantity"]) == (None, None, None)


def test_is_late_is_strictly_greater_than_tolerance() -> None:
    at_tolerance = [created("S1", t(0), pa=300), sh("arrived", "S1", t(360))]
    assert row(at_tolerance, t(1000))["delay_minutes"] == 60.0
    assert row(at_tolerance, t(1000))["is_late"] is False
    just_over = [created("S1", t(0), pa=300), sh("arrived", "S1", t(360, 1))]
    assert row(just_over, t(1000))["delay_minutes"] == pytest.approx(60 + 1 / 60_000)
    assert row(just_over, t(1000))["is_late"] is True
    assert row(at_tolerance, t(1000), tolerance=59.5)["is_late"] is True
    open_ = [created("S2", t(0), pa=300)]
    assert row(open_, t(360), "S2")["is_late"] is False  # 60.0 exactly while open
    assert row(open_, t(360, 1), "S2")["is_late"] is True


def test_fractional_delay() -> None:
    events = [created("S1", t(0), pa=300), sh("arrived", "S1", t(300) + timedelta(seconds=90))]
    assert row(events, t(1000))["delay_minutes"] == 1.5


# --------------------------------------------------------------------------- position


def test_last_position_latest_with_event_id_tie_and_any_event_type() -> None:
    events = [
        sh("position", "S1", t(100), "pos-a", lat=10.0, lon=20.0),
        sh("position", "S1", t(180), "pos-b", lat=50.0, lon=10.0),
        sh("position", "S1", t(180), "pos-c", lat=51.0, lon=9.0),
        sh("departed", "S1", t(170), lat=1.0, lon=1.0),
        sh("arrived", "S1", t(200), lat=None, lon=None),  # null pair: not a position
        sh("exception", "S1", t(150), code="OTHER", severity="info", lat=-5, lon=-6),
    ]
    r = row(events, t(1000))
    assert (r["last_lat"], r["last_lon"], r["last_position_at"]) == (51.0, 9.0, t(180))
    r = row(events, t(179))
    assert (r["last_lat"], r["last_lon"], r["last_position_at"]) == (1.0, 1.0, t(170))
    r = row(events, t(160))
    assert (r["last_lat"], r["last_lon"], r["last_position_at"]) == (-5, -6, t(150))


def test_shipment_with_only_positions_exists_without_status() -> None:
    r = row([sh("position", "S1", t(30), lat=90, lon=-180)], t(30))
    assert r["status"] is None
    assert (r["last_lat"], r["last_lon"]) == (90, -180)
    assert all(r[c] is None for c in ("origin_site_id", "eta", "planned_quantity", "delay_minutes"))


# --------------------------------------------------------------------------- inventory


def test_count_plus_changes_after_it_and_change_at_count_instant_excluded() -> None:
    events = [
        counted("W", "A", t(0), 100),
        adjusted("W", "A", t(-10), 7),  # before the count: already in it
        adjusted("W", "A", t(10), 5),  # exactly at the later count: in it
        counted("W", "A", t(10), 200),
        adjusted("W", "A", t(20), -30, "sold"),
    ]
    assert stock(events, t(-10)) == {("W", "A"): 7}
    assert stock(events, t(5)) == {("W", "A"): 100}
    assert stock(events, t(10)) == {("W", "A"): 200}
    assert stock(events, t(20)) == {("W", "A"): 170}


def test_count_tie_greater_event_id_wins_and_late_old_count_is_ignored() -> None:
    events = [
        counted("W", "A", t(0), 295, "cnt-2"),
        counted("W", "A", t(0), 290, "cnt-1"),
        counted("W", "A", t(-600), 9999),
    ]
    assert stock(events, t(5)) == {("W", "A"): 295}
    assert stock(events, t(-1)) == {("W", "A"): 9999}


def test_stock_is_not_clamped_and_zero_rows_are_kept() -> None:
    events = [adjusted("W", "A", t(0), -20, "sold"), counted("W", "B", t(0), 0)]
    assert stock(events, t(0)) == {("W", "A"): -20, ("W", "B"): 0}


def test_departure_delivery_and_count_at_the_movement_instant() -> None:
    events = [
        counted("P", "A", t(-60), 500),
        created("S1", t(0), lines=[("A", 10), ("B", 5), ("A", 3)]),
        sh("departed", "S1", t(60)),
        counted("P", "A", t(60), 450),  # includes the departure at 60
        delivered("S1", t(700), [("A", 13), ("B", 4)], damaged_quantity=1),
    ]
    assert stock(events, t(59)) == {("P", "A"): 500}
    assert stock(events, t(60)) == {("P", "A"): 450, ("P", "B"): -5}
    assert stock(events, t(700)) == {("P", "A"): 450, ("P", "B"): -5, ("D", "A"): 13, ("D", "B"): 4}
    r = row(events, t(700))
    assert (r["planned_quantity"], r["delivered_quantity"]) == (18, 17)


def test_departure_effective_time_from_arrived_or_delivered() -> None:
    via_arrived = [created("S1", t(0), lines=[("A", 12)]), sh("arrived", "S1", t(360))]
    assert stock(via_arrived, t(359)) == {}
    assert stock(via_arrived, t(360)) == {("P", "A"): -12}
    assert transit(via_arrived, t(360)) == {("P", "D", "A"): 12}  # ARRIVED still in transit
    via_delivered = [created("S2", t(0), lines=[("C", 6)]), delivered("S2", t(480), [("C", 6)])]
    assert stock(via_delivered, t(479)) == {}
    assert stock(via_delivered, t(480)) == {("P", "C"): -6, ("D", "C"): 6}
    assert transit(via_delivered, t(480)) == {}


def test_return_after_cancel_after_departure_at_earliest_cancellation() -> None:
    events = [
        counted("P", "B", t(-10), 100),
        created("S1", t(0), lines=[("B", 30)]),
        sh("departed", "S1", t(100)),
        sh("cancelled", "S1", t(300)),
        sh("cancelled", "S1", t(250)),
    ]
    assert stock(events, t(249)) == {("P", "B"): 70}
    assert transit(events, t(249)) == {("P", "D", "B"): 30}
    assert stock(events, t(250)) == {("P", "B"): 100}
    assert transit(events, t(250)) == {}
    events.append(counted("P", "B", t(250), 100))  # count at the return instant includes it
    assert stock(events, t(400)) == {("P", "B"): 100}


def test_return_at_later_of_departure_and_cancellation() -> None:
    events = [
        created("S1", t(0), lines=[("A", 4)]),
        sh("cancelled", "S1", t(200)),
        sh("arrived", "S1", t(300)),  # the goods did leave: effective departure 300
        counted("P", "A", t(250), 10),
    ]
    assert stock(events, t(299)) == {("P", "A"): 10}
    assert stock(events, t(300)) == {("P", "A"): 10}  # -4 and +4 at 300
    assert row(events, t(300))["status"] == "CANCELLED"
    assert transit(events, t(300)) == {}


def test_cancel_before_departure_and_shipment_without_plan_move_nothing() -> None:
    events = [
        created("S1", t(0)),
        sh("cancelled", "S1", t(20)),
        sh("departed", "S2", t(10)),
        delivered("S2", t(30), [("A", 5)]),
    ]
    assert stock(events, t(100)) == {}
    assert transit(events, t(100)) == {}
    assert row(events, t(100), "S2")["delivered_quantity"] == 5


def test_multiple_delivered_latest_quantities_at_earliest_time() -> None:
    events = [
        created("S1", t(0), lines=[("A", 10), ("B", 10)]),
        sh("departed", "S1", t(60)),
        delivered("S1", t(100), [("A", 8), ("B", 10)]),
        counted("D", "A", t(150), 8),
        delivered("S1", t(200), [("A", 10), ("B", 9), ("C", 0)]),
    ]
    assert stock(events, t(120)) == {
        ("P", "A"): -10,
        ("P", "B"): -10,
        ("D", "A"): 8,
        ("D", "B"): 10,
    }
    # the delivery happened at 100, before the count at 150, with the corrected quantities
    assert stock(events, t(200)) == {
        ("P", "A"): -10,
        ("P", "B"): -10,
        ("D", "A"): 8,
        ("D", "B"): 9,
        ("D", "C"): 0,
    }
    r = row(events, t(200))
    assert (r["arrived_at"], r["delivered_quantity"]) == (t(100), 19)


def test_delivered_tie_greater_event_id_wins() -> None:
    events = [
        created("S1", t(0), lines=[("A", 5)]),
        delivered("S1", t(530), [("A", 4)], "dlv-b"),
        delivered("S1", t(530), [("A", 5)], "dlv-a"),
    ]
    assert row(events, t(530))["delivered_quantity"] == 4


# --------------------------------------------------------------------------- in transit


def test_in_transit_sums_lines_and_shipments_per_lane() -> None:
    events = [
        created("S1", t(0), lines=[("A", 10), ("A", 3)]),
        sh("departed", "S1", t(10)),
        created("S2", t(0), lines=[("A", 2)]),
        sh("departed", "S2", t(20)),
        sh("arrived", "S2", t(30)),
        created("S3", t(0), lines=[("A", 100)]),  # planned only
        created("S4", t(0), lines=[("A", 7)], dest="E"),
        sh("departed", "S4", t(10)),
        delivered("S4", t(40), [("A", 7)]),
    ]
    assert transit(events, t(15)) == {("P", "D", "A"): 13, ("P", "E", "A"): 7}
    assert transit(events, t(40)) == {("P", "D", "A"): 15}
    assert [tuple(r) for r in derive_in_transit(events, t(40))] == [IN_TRANSIT_COLUMNS]


# --------------------------------------------------------------------------- generic


def test_duplicates_first_seen_wins_and_identical_change_nothing() -> None:
    base = [created("S1", t(0), lines=[("A", 10)]), sh("departed", "S1", t(10), "dep")]
    doubled = base + [dict(base[1]), dict(base[0])]
    assert derive_shipments(doubled, t(100)) == derive_shipments(base, t(100))
    assert stock(doubled, t(100)) == {("P", "A"): -10}
    # a second message with a seen event_id is a duplicate whatever it says
    replay = [*base, sh("arrived", "S1", t(20), "dep")]
    assert row(replay, t(100))["status"] == "IN_TRANSIT"


def test_as_of_before_any_event_is_empty() -> None:
    events = contract_scenario().accepted
    before = scenario_at(-2000) - timedelta(milliseconds=1)
    assert derive_shipments(events, before) == []
    assert derive_inventory(events, before) == []
    assert derive_in_transit(events, before) == []
    assert derive_shipments([], t(0)) == []


def test_offsets_compare_as_instants_and_as_of_is_inclusive() -> None:
    event = created("S1", t(0))
    event["occurred_at"] = "2026-03-02T03:00:00.000-05:00"  # 08:00Z
    assert row([event], datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))))
    assert derive_shipments([event], t(0) - timedelta(microseconds=1)) == []
    r = row([event], t(0))
    assert r["planned_departure"].tzinfo == UTC and r["planned_departure"] == t(60)


def test_row_shapes_and_types() -> None:
    events = contract_scenario().accepted
    rows = derive_shipments(events, scenario_at(2000))
    assert [r["shipment_id"] for r in rows] == sorted(r["shipment_id"] for r in rows)
    for r in rows:
        assert tuple(r) == SHIPMENT_COLUMNS
        for column in (
            "planned_departure",
            "planned_arrival",
            "departed_at",
            "arrived_at",
            "eta",
            "last_position_at",
        ):
            assert r[column] is None or r[column].utcoffset() == timedelta(0)
        assert r["delay_minutes"] is None or type(r["delay_minutes"]) is float
        assert r["is_late"] in (None, True, False)
        for column in ("planned_quantity", "delivered_quantity"):
            assert r[column] is None or type(r[column]) is int
    inventory = derive_inventory(events, scenario_at(2000))
    assert all(tuple(r) == INVENTORY_COLUMNS for r in inventory)
    keys = [(r["site_id"], r["sku"]) for r in inventory]
    assert keys == sorted(keys)


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_order_independence(shuffler: random.Random) -> None:
    events = contract_scenario().accepted
    shuffled = list(events)
    shuffler.shuffle(shuffled)
    for as_of in (scenario_at(60), scenario_at(300) - timedelta(milliseconds=1), scenario_at(2000)):
        assert derive_shipments(shuffled, as_of) == derive_shipments(events, as_of)
        assert derive_inventory(shuffled, as_of) == derive_inventory(events, as_of)
        assert derive_in_transit(shuffled, as_of) == derive_in_transit(events, as_of)


# --------------------------------------------------------------------------- metrics


def test_on_time_rate_and_otif() -> None:
    events = [
        # on time, in full
        created("S1", t(0), lines=[("A", 5)], pa=100),
        delivered("S1", t(150), [("A", 5)]),
        # on time (exactly at tolerance), short delivered
        created("S2", t(0), lines=[("A", 5)], pa=100),
        delivered("S2", t(160), [("A", 4)], damaged_quantity=1),
        # arrived late
        created("S3", t(0), lines=[("A", 5)], pa=100),
        sh("arrived", "S3", t(161)),
        # open and overdue at T = 300 (200 + 60 < 300)
        created("S4", t(0), lines=[("A", 5)], pa=200),
        # open, planned 250: 250 + 60 is not < 300, so not counted
        created("S5", t(0), lines=[("A", 5)], pa=250),
        # cancelled: excluded even though arrived late
        created("S6", t(0), lines=[("A", 5)], pa=100),
        sh("arrived", "S6", t(290)),
        sh("cancelled", "S6", t(295)),
        # arrived on time, not delivered yet: on time, not (yet) OTIF
        created("S7", t(0), lines=[("A", 5)], pa=400),
        sh("arrived", "S7", t(280)),
    ]
    # arrived: S1, S2, S3, S7 (4), of which on time S1, S2, S7; overdue open: S4
    assert on_time_rate(events, t(300)) == 3 / 5
    assert otif(events, t(300)) == 1 / 5
    # a period on planned_arrival in [150, 300): S4 (200, overdue) and S5 (250, not yet due)
    assert on_time_rate(events, t(300), period_start=t(150), period_end=t(300)) == 0.0
    assert on_time_rate(events, t(300), period_start=t(150), period_end=t(200)) is None
    # tolerance 30: S1 (50) and S2 (60) become late, S5 (250 + 30 < 300) becomes overdue
    assert on_time_rate(events, t(300), tolerance_minutes=30) == 1 / 6
    assert on_time_rate([], t(0)) is None


# --------------------------------------------------------------------------- contract scenario


def test_contract_scenario_end_state_hand_computed() -> None:
    events = contract_scenario().accepted
    end = scenario_at(2000)
    assert stock(events, end) == {
        # count 50 at 700 includes SHP-0001's delivery; +2 at 701
        (DC_HAM, SKU_A): 52,
        (DC_HAM, SKU_B): 40,
        (DC_HAM, "TIRE-UNLISTED-X"): -6,  # SHP-0007 left DC-HAM without a count
        (DC_LYS, SKU_A): 16,  # SHP-0008 10 + SHP-0009 4 + SHP-0012 2
        (DC_LYS, SKU_B): -3,  # SHP-0008 +9, SHP-0010 left with 12
        (DC_LYS, "TIRE-UNLISTED-X"): 0,
        (PLANT, SKU_A): 439,  # 450 at 60 - SHP-0005 8 - SHP-0021 3
        (PLANT, SKU_B): 266,  # 295 - 1 - 5 - 30 + 30 - 6 - 10 - 5 - 1 - 1
        (GHOST, "TIRE-UNLISTED-X"): 9,
    }
    assert transit(events, end) == {
        (DC_LYS, DC_HAM, SKU_B): 12,
        (PLANT, DC_HAM, SKU_A): 4,
        (PLANT, DC_HAM, SKU_B): 2,
        (PLANT, DC_LYS, SKU_A): 25,
        (PLANT, DC_LYS, SKU_B): 5,
    }
    rows = {r["shipment_id"]: r for r in derive_shipments(events, end)}
    assert len(rows) == 22
    assert {sid: r["status"] for sid, r in rows.items() if not sid.startswith("SHP-XX")} == {
        "SHP-0001": "DELIVERED",
        "SHP-0002": "IN_TRANSIT",
        "SHP-0003": "CANCELLED",
        "SHP-0004": "CANCELLED",
        "SHP-0005": "DELIVERED",
        "SHP-0006": "DELIVERED",
        "SHP-0007": "DELIVERED",
        "SHP-0008": "DELIVERED",
        "SHP-0009": "DELIVERED",
        "SHP-0010": "ARRIVED",
        "SHP-0011": "ARRIVED",
        "SHP-0012": "DELIVERED",
        "SHP-0013": "PLANNED",
        "SHP-0016": "PLANNED",
        "SHP-0017": "PLANNED",
        "SHP-0018": "CANCELLED",
        "SHP-0019": "CANCELLED",
        "SHP-0020": "ARRIVED",
        "SHP-0021": "IN_TRANSIT",
        "SHP-ETAONLY": None,
        "SHP-POSONLY": None,
    }
    assert rows["SHP-0001"]["last_lat"] == 53.55
    assert rows["SHP-0002"]["eta"] == scenario_at(450)
    assert rows["SHP-0002"]["delay_minutes"] == 1600.0
    assert rows["SHP-0020"]["last_position_at"] == scenario_at(45)
    assert rows["SHP-0020"]["last_lat"] == 49.0
    assert rows["SHP-0013"]["destination_site_id"] == DC_LYS
    assert on_time_rate(events, end) == 9 / 16
    assert otif(events, end) == 4 / 16


def test_contract_scenario_mid_state_hand_computed() -> None:
    events = contract_scenario().accepted
    before_return = scenario_at(250) - timedelta(milliseconds=1)
    # PLANT B: 295 - 1 (45.5) - SHP-0002 5 (plan as of T has B 5, departed 30) - SHP-0001 5
    # - SHP-0004 30 - SHP-0006 6 - SHP-0008 10 - long id 1 - SHP-0020 1
    assert stock(events, before_return)[(PLANT, SKU_B)] == 236
    assert stock(events, scenario_at(250))[(PLANT, SKU_B)] == 266
    rows = {r["shipment_id"]: r for r in derive_shipments(events, scenario_at(300))}
    assert rows["SHP-0006"]["status"] == "CANCELLED"  # cancelled at 300, delivered at 420
    assert rows["SHP-0019"]["status"] == "CANCELLED"
    assert rows["SHP-0001"]["last_lat"] == 51.2  # tie at 180: pos-0001-180-b
    early = {r["shipment_id"]: r for r in derive_shipments(events, scenario_at(1))}
    assert early["SHP-0002"]["destination_site_id"] == GHOST  # the late old plan, as of 1
    assert early["SHP-0002"]["planned_quantity"] == 1


# --------------------------------------------------------------------------- scenarios


def _check_invariants(scenario: Scenario) -> None:
    assert len(scenario.messages) == len(scenario.accepted) + len(scenario.rejected)
    ids = [e["event_id"] for e in scenario.accepted]
    assert scenario.duplicates == len(ids) - len(set(ids))
    assert scenario.as_of_times == sorted(set(scenario.as_of_times))
    assert all(a.tzinfo is not None for a in scenario.as_of_times)
    # validity by construction agrees with the independent validator, message by message
    expected_accepted, expected_rejected = [], []
    for family, key, value in scenario.messages:
        assert family in (SHIPMENTS, INVENTORY) and isinstance(key, str) and key
        if contract_violation(family, value) is None:
            expected_accepted.append(json.loads(value))
        else:
            expected_rejected.append(value)
    assert expected_accepted == scenario.accepted
    assert Counter(expected_rejected) == Counter(scenario.rejected)
    # the same event_id always carries the same event
    by_id: dict[str, dict] = {}
    for event in scenario.accepted:
        assert by_id.setdefault(event["event_id"], event) == event


def test_contract_scenario_invariants_and_coverage() -> None:
    scenario = contract_scenario()
    _check_invariants(scenario)
    assert scenario.duplicates == 5
    assert contract_scenario() == scenario
    assert contract_scenario(8).messages != scenario.messages
    other = contract_scenario(8)  # another seed: other order and timestamp spellings
    assert len(other.messages) == len(scenario.messages)
    assert [e["event_id"] for e in other.accepted] != [e["event_id"] for e in scenario.accepted]
    assert {e["event_id"] for e in other.accepted} == {e["event_id"] for e in scenario.accepted}
    assert derive_inventory(other.accepted, scenario_at(2000)) == derive_inventory(
        scenario.accepted, scenario_at(2000)
    )
    assert len(set(scenario.rejected)) == len(scenario.rejected)
    rejected_text = b"\n".join(scenario.rejected)
    for needle in (
        b'"schema_version":"1"',
        b'"schema_version":1.0',
        b'"schema_version":true',
        b'"schema_version":0',
        b'"schema_version":2',
        b'"quantity":120.5',
        b'"quantity":"3"',
        b'"quantity":true',
        b'"quantity":0',
        b'"lines":[]',
        b'"delta":0',
        b'"lat":90.5',
        b"NaN",
        b"\xff",
        b'"event_id":""',
        b'"E' + b"E" * 64 + b'"',
        b"teleported",
    ):
        assert needle in rejected_text, needle
    accepted_ids = {e["event_id"] for e in scenario.accepted}
    assert "D" * 64 in accepted_ids and "evt-reuse-0021" in accepted_ids
    reused = [v for v in scenario.rejected if b'"evt-reuse-0021"' in v]
    assert len(reused) == 1
    assert scenario.messages.index(("shipments", "SHP-0021", reused[0])) < next(
        i
        for i, (_f, _k, v) in enumerate(scenario.messages)
        if b'"evt-reuse-0021"' in v and v not in scenario.rejected
    )
    offsets = {e["occurred_at"][-6:] for e in scenario.accepted}
    assert {"+01:00", "-05:00"} <= offsets and any(o.endswith("Z") for o in offsets)
    assert any(e["event_type"] == "shipment.position" for e in scenario.accepted[-3:])  # late


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_scenario_invariants(seed: int) -> None:
    scenario = random_scenario(seed)
    _check_invariants(scenario)
    assert scenario.duplicates > 0 and scenario.rejected
    assert random_scenario(seed) == scenario
    for as_of in scenario.as_of_times[:: max(1, len(scenario.as_of_times) // 6)]:
        derive_shipments(scenario.accepted, as_of)
        derive_inventory(scenario.accepted, as_of)
        derive_in_transit(scenario.accepted, as_of)


@pytest.mark.parametrize("seed", [5, 6])
def test_random_scenario_stock_is_conserved_without_counts(seed: int) -> None:
    """Without counts, stock + in transit = adjustments + (delivered - planned) of deliveries.

    Departure takes the plan out, in transit holds it, a return puts it back and a delivery
    brings the delivered lines in: an independent check tying the three derivations together.
    """
    events = [e for e in random_scenario(seed).accepted if e["event_type"] != "inventory.counted"]
    for as_of in random_scenario(seed).as_of_times:
        on_hand = sum(r["on_hand"] for r in derive_inventory(events, as_of))
        in_transit = sum(r["in_transit"] for r in derive_in_transit(events, as_of))
        first_seen = {e["event_id"]: e for e in reversed(events)}.values()
        adjustments = sum(
            e["delta"]
            for e in first_seen
            if e["event_type"] == "inventory.adjusted"
            and datetime.fromisoformat(e["occurred_at"]) <= as_of
        )
        deliveries = sum(
            r["delivered_quantity"] - r["planned_quantity"]
            for r in derive_shipments(events, as_of)
            if r["status"] == "DELIVERED" and r["planned_quantity"] is not None
        )
        assert on_hand + in_transit == adjustments + deliveries


def test_random_scenario_sizes() -> None:
    scenario = random_scenario(11, shipments=5, sites=2, skus=1)
    shipment_ids = {e["shipment_id"] for e in scenario.accepted if "shipment_id" in e}
    assert len(shipment_ids) == 5
    assert {e["site_id"] for e in scenario.accepted if "site_id" in e} <= {
        "SITE-01",
        "SITE-02",
        "SITE-UNLISTED",
    }


# --------------------------------------------------------------------------- validator


@pytest.mark.parametrize(
    ("family", "value", "valid"),
    [
        (SHIPMENTS, {}, True),
        (SHIPMENTS, {"schema_version": 1.0}, False),
        (SHIPMENTS, {"schema_version": 2}, False),
        (SHIPMENTS, {"lat": 10.0}, False),
        (SHIPMENTS, {"lat": None, "lon": None}, True),
        (SHIPMENTS, {"lat": 90, "lon": -180}, True),
        (SHIPMENTS, {"x_future": {"nested": [1]}}, True),
        (SHIPMENTS, {"occurred_at": "2026-03-02T08:00:00"}, False),
        (SHIPMENTS, {"shipment_id": "S" * 64}, True),
        (SHIPMENTS, {"shipment_id": "S" * 65}, False),
        (INVENTORY, {}, False),
    ],
)
def test_validator_spot_checks(family: str, value: dict, valid: bool) -> None:
    event = {**sh("departed", "S1", t(0)), **value}
    assert (contract_violation(family, json.dumps(event).encode()) is None) is valid
