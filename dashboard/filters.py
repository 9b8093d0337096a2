"""The filters shared by every page: what they may hold, and how they live in the URL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from dashboard.theme import DELIVERY_STATUSES
from ingest.network import MODES, Network


@dataclass(frozen=True)
class Filters:
    """Chosen values per dimension; an empty tuple means "all"."""

    region: tuple[str, ...] = ()
    carrier: tuple[str, ...] = ()
    mode: tuple[str, ...] = ()
    status: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


FILTER_NAMES = tuple(f.name for f in fields(Filters))


@dataclass(frozen=True)
class FilterOptions:
    """The whitelist of each filter, in display order, with a label per value."""

    region: tuple[str, ...]
    carrier: tuple[str, ...]
    mode: tuple[str, ...]
    status: tuple[str, ...]
    labels: Mapping[str, Mapping[str, str]]

    def allowed(self, name: str) -> tuple[str, ...]:
        return getattr(self, name)

    def label(self, name: str, value: str) -> str:
        return self.labels.get(name, {}).get(value, value)


def filter_options(network: Network) -> FilterOptions:
    """Options from the reference network (data/), so the sidebar works even with no worker."""
    regions = tuple(sorted({site.region for site in network.sites.values()}))
    carriers = tuple(sorted(network.carriers))
    return FilterOptions(
        region=regions,
        carrier=carriers,
        mode=tuple(MODES),
        status=tuple(s.key for s in DELIVERY_STATUSES),
        labels={
            "carrier": {c.carrier_id: c.name for c in network.carriers.values()},
            "mode": {m: m.capitalize() for m in MODES},
            "status": {s.key: s.label for s in DELIVERY_STATUSES},
        },
    )


def clean(values: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """Keep only whitelisted values, once each, in whitelist order (URLs are user input)."""
    chosen = set(values)
    return tuple(v for v in allowed if v in chosen)


def from_query_params(params: Mapping[str, list[str]], options: FilterOptions) -> Filters:
    """Filters from URL query parameters (`?carrier=A&carrier=B`), unknown values dropped."""
    return Filters(
        **{name: clean(params.get(name, []), options.allowed(name)) for name in FILTER_NAMES}
    )


def to_query_params(filters: Filters) -> dict[str, list[str]]:
    """The non-empty filters as query parameters (repeated keys for several values)."""
    return {name: list(getattr(filters, name)) for name in FILTER_NAMES if getattr(filters, name)}
