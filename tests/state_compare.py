"""Read derived-state rows from a store and compare them with expected rows (float tolerance)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

import duckdb

from ingest.export import DATASETS, dataset_source


def store_rows(
    con: duckdb.DuckDBPyConnection, dataset: str, as_of: dt.datetime | None
) -> list[dict[str, Any]]:
    """Rows of a dataset from the live views (as_of None) or the as-of macros."""
    spec = DATASETS[dataset]
    if as_of is None:
        source = {"shipments": "shipments_now", "inventory": "inventory_now"}.get(
            dataset, "in_transit_now"
        )
    else:
        source = dataset_source(dataset, as_of, 60.0)
    cols = ", ".join(f'"{c}"' for c in spec.columns)
    order = ", ".join(f'"{c}"' for c in spec.order_by)
    cur = con.cursor().execute(f"SELECT {cols} FROM {source} ORDER BY {order}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b
    return a == b


def assert_same_rows(
    got: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    what: str,
    ignore: Iterable[str] = (),
) -> None:
    skip = set(ignore)
    assert len(got) == len(expected), f"{what}: {len(got)} rows, expected {len(expected)}"
    for g, e in zip(got, expected, strict=True):
        diffs = {k: (g.get(k), e[k]) for k in e if k not in skip and not _same(g.get(k), e[k])}
        assert not diffs, f"{what}: row {e.get('shipment_id') or e} differs: {diffs}"
