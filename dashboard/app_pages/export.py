"""Export: a snapshot as of a chosen time, byte for byte what `tiretrack export` writes, with
its manifest; and how to query the live data from the DuckDB CLI."""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import os
import shlex
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components, queries
from dashboard.filters import Filters, matching_sites, matching_skus
from dashboard.formatting import clock, escape_markdown, number
from ingest.database import extension_path, string_literal
from ingest.export import DATASETS, export_snapshot
from ingest.network import MODES, Network
from ingest.readers import open_reader
from ingest.serve import TOKEN_ENV, read_endpoint, token_path

DATASET_LABELS = {
    "shipments": "Shipments",
    "inventory": "Inventory on hand",
    "in-transit": "In transit",
    "dead-letters": "Dead letters (rejected messages)",
}
FORMATS = {  # format -> (label, file extension, MIME type)
    "csv": ("CSV", "csv", "text/csv"),
    "parquet": ("Parquet", "parquet", "application/vnd.apache.parquet"),
    "xlsx": ("Excel", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}
SHIPMENT_STATUSES = ("PLANNED", "IN_TRANSIT", "ARRIVED", "DELIVERED", "CANCELLED")
# Session state keeps the last export as plain data: this module's classes are new objects on
# every run of the page, so an instance from an earlier run would not compare equal.
PREPARED_KEY = "export_prepared"
DEFAULT_TOLERANCE_MINUTES = 60.0  # `tiretrack export`'s default when the worker's is unknown


@dataclass(frozen=True)
class ExportRequest:
    dataset: str
    fmt: str
    as_of: dt.datetime | None  # None: now, at the moment the export runs
    tolerance_minutes: float
    filters: tuple[tuple[str, tuple[str, ...]], ...]  # column -> values, whitelisted

    def filter_dict(self) -> dict[str, list[str]]:
        return {column: list(values) for column, values in self.filters}

    def key(self) -> tuple[object, ...]:
        return (self.dataset, self.fmt, self.as_of, self.tolerance_minutes, self.filters)


@dataclass(frozen=True)
class PreparedExport:
    request: ExportRequest
    file_name: str
    data: bytes
    manifest_name: str
    manifest: bytes
    zip_name: str
    zip_data: bytes
    seconds: float

    @property
    def details(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.manifest)
        return parsed


# --- what may be filtered ---


def column_choices(network: Network, dataset: str) -> dict[str, tuple[str, ...]]:
    """The filterable columns of a dataset with their allowed values (the whitelist)."""
    sites = tuple(sorted(network.sites))
    skus = tuple(sorted(network.skus))
    return {
        "shipments": {
            "status": SHIPMENT_STATUSES,
            "carrier_id": tuple(sorted(network.carriers)),
            "mode": tuple(MODES),
            "origin_site_id": sites,
            "destination_site_id": sites,
        },
        "inventory": {"site_id": sites, "sku": skus},
        "in-transit": {"origin_site_id": sites, "destination_site_id": sites, "sku": skus},
    }.get(dataset, {})


def value_labels(network: Network) -> dict[str, dict[str, str]]:
    sites = {s.site_id: f"{s.site_id} · {s.name}" for s in network.sites.values()}
    return {
        "carrier_id": {
            c.carrier_id: f"{c.carrier_id} · {c.name}" for c in network.carriers.values()
        },
        "site_id": sites,
        "origin_site_id": sites,
        "destination_site_id": sites,
        "sku": {k.sku: f"{k.sku} · {k.description}" for k in network.skus.values()},
    }


def sidebar_columns(
    dataset: str, filters: Filters, network: Network
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The sidebar filters that apply to a dataset, as column filters, and the names of those
    that do not (a dataset without SKUs cannot be filtered by segment, nothing here has a
    delivery status). Plant and distributor mean origin and destination for shipments and
    in-transit lines, and the site itself for stock, as on the other pages."""
    applied: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    if dataset in ("shipments", "in-transit"):
        if filters.plant:
            applied["origin_site_id"] = filters.plant
            used.add("plant")
        if filters.distributor:
            applied["destination_site_id"] = filters.distributor
            used.add("distributor")
    if dataset == "shipments":
        if filters.carrier:
            applied["carrier_id"] = filters.carrier
            used.add("carrier")
        if filters.mode:
            applied["mode"] = filters.mode
            used.add("mode")
    if dataset == "inventory":
        sites = ("region", "plant", "distributor")
        if any(getattr(filters, name) for name in sites):
            applied["site_id"] = matching_sites(filters, network)
            used.update(sites)
    if dataset in ("inventory", "in-transit") and (filters.segment or filters.sku):
        applied["sku"] = matching_skus(filters, network)
        used.update(("segment", "sku"))
    ignored = [name for name in filters.chosen() if name not in used]
    return applied, ignored


def combined(
    allowed: Mapping[str, tuple[str, ...]],
    sidebar: Mapping[str, tuple[str, ...]],
    chosen: Mapping[str, tuple[str, ...]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Both kinds of filters on one column keep what both allow; whitelist order, no empties
    unless the two exclude each other (then the column keeps an empty tuple)."""
    result = []
    for column, values in allowed.items():
        sets = [set(f[column]) for f in (sidebar, chosen) if f.get(column)]
        if sets:
            keep = set.intersection(*sets)
            result.append((column, tuple(v for v in values if v in keep)))
    return tuple(result)


# --- running the export ---


def stamp(value: str | None) -> str:
    """`2026-03-02T08:00:00.5Z` -> `20260302T080000Z` for file names."""
    if not value:
        return "now"
    return value.split(".")[0].replace("-", "").replace(":", "").rstrip("Z") + "Z"


def run_export(db_path: Path, request: ExportRequest) -> PreparedExport:
    """`export_snapshot` into a private temp dir, as `tiretrack export` runs it; the bytes back."""
    started = time.monotonic()
    _, extension, _ = FORMATS[request.fmt]
    reader = open_reader(db_path)
    try:
        with tempfile.TemporaryDirectory(prefix="tiretrack-export-") as tmp:
            result = export_snapshot(
                reader,
                request.dataset,
                fmt=request.fmt,
                out=Path(tmp) / f"snapshot.{extension}",
                as_of=request.as_of,
                tolerance_minutes=request.tolerance_minutes,
                filters=request.filter_dict(),
            )
            data = result.out.read_bytes()
            manifest = result.manifest_path.read_bytes()
    finally:
        reader.close()
    details = json.loads(manifest)
    instant = stamp(details["as_of"] or details["created_at"])
    file_name = f"tiretrack-{request.dataset}-{instant}.{extension}"
    manifest_name = f"{file_name}.manifest.json"
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(file_name, data)
        archive.writestr(manifest_name, manifest)
    return PreparedExport(
        request,
        file_name,
        data,
        manifest_name,
        manifest,
        file_name.rsplit(".", 1)[0] + ".zip",
        bundle.getvalue(),
        time.monotonic() - started,
    )


def cli_command(db_path: Path, prepared: PreparedExport) -> str:
    """The `tiretrack export` command that writes the same file."""
    details = prepared.details
    request = prepared.request
    parts = ["tiretrack", "export", request.dataset, "--db", str(db_path)]
    if details["as_of"]:
        parts += ["--as-of", details["as_of"]]
    if request.dataset == "shipments":
        parts += ["--on-time-tolerance", f"{request.tolerance_minutes:g}"]
    parts += ["--format", request.fmt, "--out", prepared.file_name]
    for column, values in request.filters:
        for value in values:
            parts += ["--filter", f"{column}={value}"]
    return " ".join(shlex.quote(p) for p in parts)


# --- the page ---


def as_of_input(dataset: str) -> dt.datetime | None:
    if not DATASETS[dataset].as_of_applies:
        st.caption("As of: does not apply, the file holds every rejected message kept so far.")
        return None
    now_mode = st.toggle(
        "As of now",
        value=True,
        key="export_now",
        help="The moment you press Prepare; turn off to choose a past instant (UTC).",
    )
    if now_mode:
        return None
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    left, right = st.columns(2)
    day = left.date_input("Date (UTC)", value=now.date(), key="export_date", format="YYYY-MM-DD")
    moment = right.time_input("Time (UTC)", value=now.time(), key="export_time", step=60)
    return dt.datetime.combine(day or now.date(), moment or now.time(), tzinfo=dt.UTC)


def tolerance_input(dataset: str) -> float:
    try:
        worker_value = queries.tolerance_minutes()
    except queries.DataUnavailable:
        worker_value = None
    default = DEFAULT_TOLERANCE_MINUTES if worker_value is None else worker_value
    if dataset != "shipments":
        return default
    return float(
        st.number_input(
            "On-time tolerance (minutes)",
            min_value=0.0,
            value=default,
            step=1.0,
            format="%g",
            key="export_tolerance",
            help="Minutes after planned arrival that still count as on time (is_late); "
            "defaults to the worker's setting.",
        )
    )


def label_of(names: Mapping[str, str], value: str) -> str:
    return names.get(value, value)


def filter_inputs(dataset: str, network: Network) -> tuple[tuple[str, tuple[str, ...]], ...]:
    allowed = column_choices(network, dataset)
    sidebar, ignored = sidebar_columns(dataset, components.current_filters(), network)
    if sidebar:
        shown = "; ".join(f"{c} in {', '.join(v) or '(none)'}" for c, v in sidebar.items())
        st.caption(f"Sidebar filters applied: {escape_markdown(shown)}.")
    if ignored:
        st.caption(
            f"Sidebar filters that do not apply to {DATASET_LABELS[dataset].lower()}: "
            + ", ".join(ignored)
            + "."
        )
    chosen: dict[str, tuple[str, ...]] = {}
    if allowed:
        labels = value_labels(network)
        with st.expander("Filter columns", expanded=False):
            columns = st.columns(min(3, len(allowed)))
            for index, (column, values) in enumerate(allowed.items()):
                names = labels.get(column, {})
                picked = columns[index % len(columns)].multiselect(
                    column,
                    values,
                    key=f"export_{dataset}_{column}",
                    format_func=functools.partial(label_of, names),
                    placeholder="All",
                )
                chosen[column] = tuple(v for v in values if v in set(picked))
    return combined(allowed, sidebar, chosen)


def show_manifest(db_path: Path, prepared: PreparedExport) -> None:
    details = prepared.details
    label, _, mime = FORMATS[prepared.request.fmt]
    st.success(
        f"{number(details['rows'])} rows of {DATASET_LABELS[details['dataset']].lower()} "
        f"prepared in {prepared.seconds:.2f} s.",
        icon="✅",
    )
    columns = st.columns(3)
    columns[0].download_button(
        f"{label} file",
        prepared.data,
        file_name=prepared.file_name,
        mime=mime,
        key="export_download_file",
        on_click="ignore",
        type="primary",
        icon="⬇️",
        width="stretch",
    )
    columns[1].download_button(
        "Manifest (JSON)",
        prepared.manifest,
        file_name=prepared.manifest_name,
        mime="application/json",
        key="export_download_manifest",
        on_click="ignore",
        width="stretch",
    )
    columns[2].download_button(
        "Zip: file + manifest",
        prepared.zip_data,
        file_name=prepared.zip_name,
        mime="application/zip",
        key="export_download_zip",
        on_click="ignore",
        width="stretch",
    )
    st.subheader("Manifest")
    metrics = st.columns([1, 2, 1, 1])
    metrics[0].metric("Rows", number(details["rows"]))
    metrics[1].metric(
        "As of", clock(details["as_of"], seconds=True) if details["as_of"] else "all kept"
    )
    metrics[2].metric("Format", label)
    tolerance = details.get("on_time_tolerance_minutes")
    metrics[3].metric("On-time tolerance", "—" if tolerance is None else f"{tolerance:g} min")
    offsets = [
        {"topic": topic, "partition": int(partition), "next_offset": offset}
        for topic, partitions in details["offsets"].items()
        for partition, offset in partitions.items()
    ]
    st.caption(
        "Kafka positions the snapshot includes: every message before `next_offset` of each "
        "partition had been stored when the rows were read."
    )
    if offsets:
        st.dataframe(
            pd.DataFrame(offsets),
            hide_index=True,
            column_config={
                "topic": "Topic",
                "partition": st.column_config.NumberColumn("Partition", format="%d"),
                "next_offset": st.column_config.NumberColumn("Next offset", format="%d"),
            },
        )
    else:
        components.empty_state("No Kafka offsets recorded yet (nothing has been ingested).")
    st.caption("Filters")
    st.code(json.dumps(details["filters"], indent=2), language="json")
    st.caption("SQL (run on the worker)")
    st.code(details["query"], language="sql", wrap_lines=True)
    st.caption("The same file from the command line")
    st.code(cli_command(db_path, prepared), language="bash", wrap_lines=True)
    with st.expander("Whole manifest"):
        st.code(prepared.manifest.decode("utf-8"), language="json")


def attach_help(db_path: Path, prepared: PreparedExport | None) -> None:
    """How to reach the live data from DuckDB; the token stays in its file (path shown only)."""
    st.subheader("Query the live data from your own DuckDB")
    st.markdown("`tiretrack shell` opens the DuckDB CLI already attached:")
    st.code(f"tiretrack shell --db {shlex.quote(str(db_path))}", language="bash")
    loads = "".join(
        f"LOAD {string_literal(str(extension_path(name)))};\n" for name in ("httpfs", "quack")
    )
    endpoint = read_endpoint(db_path)
    query = (
        prepared.details["query"]
        if prepared
        else "SELECT status, count(*) FROM shipments_now GROUP BY status"
    )
    if endpoint is not None:
        secret = (
            f"<the value of ${TOKEN_ENV} in the worker's environment>"
            if os.environ.get(TOKEN_ENV)
            else f"<contents of {token_path(db_path)}>"
        )
        st.markdown(
            "Or by hand, in any DuckDB 1.5.5 on this machine (load httpfs before quack); the "
            "token is the worker's secret, readable only by its owner:"
        )
        st.code(
            f"{loads}ATTACH {string_literal(endpoint.uri)} AS live (TOKEN '{secret}');\n"
            f"FROM live.query({string_literal(query)});",
            language="sql",
            wrap_lines=True,
        )
        st.caption("`live.query('...')` runs the whole query on the worker.")
    else:
        st.markdown(
            "No worker is serving the database right now; while none runs, the file can be "
            "opened read-only:"
        )
        st.code(
            f"ATTACH {string_literal(str(db_path))} AS live (READ_ONLY);\nUSE live;\n{query};",
            language="sql",
            wrap_lines=True,
        )


st.title("Export")
st.caption(
    "A snapshot of the derived state as of a chosen time: the same file `tiretrack export` "
    "writes, with a manifest (as-of, Kafka offsets, filters, SQL) to reproduce it."
)
db_path = queries.database_path()
network = queries.reference_network()
left, right = st.columns([2, 1])
dataset = left.selectbox(
    "Dataset", list(DATASET_LABELS), format_func=DATASET_LABELS.__getitem__, key="export_dataset"
)
fmt = right.segmented_control(
    "Format",
    list(FORMATS),
    default="csv",
    format_func=lambda f: FORMATS[f][0],
    key="export_format",
    required=True,
)
when, tolerance = st.columns([2, 1], vertical_alignment="bottom")
with when:
    as_of = as_of_input(dataset)
with tolerance:
    tolerance_minutes = tolerance_input(dataset)
request = ExportRequest(
    dataset, fmt or "csv", as_of, tolerance_minutes, filter_inputs(dataset, network)
)
excluded = [column for column, values in request.filters if not values]
if excluded:
    st.warning(
        f"The sidebar and the column filters on {', '.join(excluded)} exclude each other: "
        "nothing to export.",
        icon="⚠️",
    )
elif st.button("Prepare export", type="primary", key="export_prepare"):
    try:
        done = run_export(db_path, request)
    except queries.READ_FAILURES as e:
        st.error(f"Export failed: {escape_markdown(str(e))}", icon="⚠️")
    else:
        plain = {f.name: getattr(done, f.name) for f in fields(PreparedExport)}
        st.session_state[PREPARED_KEY] = plain | {"request": request.key()}
stored = st.session_state.get(PREPARED_KEY)
current = None
if isinstance(stored, dict) and stored.get("request") == request.key():
    current = PreparedExport(**(stored | {"request": request}))
if current is not None:
    show_manifest(db_path, current)
elif stored is not None:
    st.info("The choices changed since the last export: press Prepare export again.", icon="ℹ️")
attach_help(db_path, current)
