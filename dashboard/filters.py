"""The filters shared by every page: what they may hold, and how they live in the URL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from dashboard.theme import DELIVERY_STATUSES
from ingest.network import MODES, SEGMENTS, Network, Site


@dataclass(frozen=True)
class Filters:
    """Chosen values per dimension; an empty tuple means "all".

    A shipment matches `plant` by its origin and `distributor` by its destination; `segment`
    and `sku` when any planned line's SKU is chosen. Stock rows match a site filter by their
    site and `segment` / `sku` by their own SKU.
    """

    region: tuple[str, ...] = ()
    plant: tuple[str, ...] = ()
    distributor: tuple[str, ...] = ()
    carrier: tuple[str, ...] = ()
    mode: tuple[str, ...] = ()
    segment: tuple[str, ...] = ()
    sku: tuple[str, ...] = ()
    status: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def chosen(self) -> tuple[str, ...]:
        """Names of the filters that hold a value, in sidebar order."""
        return tuple(name for name in FILTER_NAMES if getattr(self, name))


FILTER_NAMES = tuple(f.name for f in fields(Filters))
SITE_FILTERS = {"plant": "plant", "distributor": "distributor"}  # filter -> site kind


@dataclass(frozen=True)
class FilterOptions:
    """The whitelist of each filter, in display order, with a label per value."""

    region: tuple[str, ...]
    plant: tuple[str, ...]
    distributor: tuple[str, ...]
    carrier: tuple[str, ...]
    mode: tuple[str, ...]
    segment: tuple[str, ...]
    sku: tuple[str, ...]
    status: tuple[str, ...]
    labels: Mapping[str, Mapping[str, str]]

    def allowed(self, name: str) -> tuple[str, ...]:
        return getattr(self, name)

    def label(self, name: str, value: str) -> str:
        return self.labels.get(name, {}).get(value, value)


def _sites_of_kind(network: Network, kind: str) -> tuple[str, ...]:
    sites = (s for s in network.sites.values() if s.kind == kind)
    return tuple(s.site_id for s in sorted(sites, key=lambda s: (s.name, s.site_id)))


def filter_options(network: Network) -> FilterOptions:
    """Options from the reference network (data/), so the sidebar works even with no worker."""
    regions = tuple(sorted({site.region for site in network.sites.values()}))
    carriers = tuple(sorted(network.carriers))
    site_labels = {s.site_id: f"{s.name} ({s.city})" for s in network.sites.values()}
    return FilterOptions(
        region=regions,
        plant=_sites_of_kind(network, "plant"),
        distributor=_sites_of_kind(network, "distributor"),
        carrier=carriers,
        mode=tuple(MODES),
        segment=tuple(s for s in SEGMENTS if any(k.segment == s for k in network.skus.values())),
        sku=tuple(sorted(network.skus)),
        status=tuple(s.key for s in DELIVERY_STATUSES),
        labels={
            "plant": site_labels,
            "distributor": site_labels,
            "carrier": {c.carrier_id: c.name for c in network.carriers.values()},
            "mode": {m: m.capitalize() for m in MODES},
            "segment": {s: s.capitalize() for s in SEGMENTS},
            "sku": {k.sku: f"{k.sku} · {k.description}" for k in network.skus.values()},
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


def site_matches(filters: Filters, site: Site) -> bool:
    """A site's own row (stock, the map's dots) under region, plant and distributor: a site
    filter narrows the sites of its kind and leaves the other kinds alone."""
    if filters.region and site.region not in filters.region:
        return False
    for name, kind in SITE_FILTERS.items():
        chosen = getattr(filters, name)
        if chosen and site.kind == kind and site.site_id not in chosen:
            return False
    return True


def matching_sites(filters: Filters, network: Network) -> tuple[str, ...]:
    """Ids of the sites `site_matches` keeps, sorted."""
    return tuple(sorted(s.site_id for s in network.sites.values() if site_matches(filters, s)))


def matching_skus(filters: Filters, network: Network) -> tuple[str, ...]:
    """SKUs chosen by `sku` and in a chosen `segment` (every SKU when neither is set), sorted."""
    return tuple(
        sorted(
            k.sku
            for k in network.skus.values()
            if (not filters.sku or k.sku in filters.sku)
            and (not filters.segment or k.segment in filters.segment)
        )
    )
