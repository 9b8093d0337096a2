"""The `tiretrack chaos` command: the worker killed at random moments at full size, fuzzed input,
shuffled arrival orders, each compared with an undisturbed run, and concurrent dashboard users.

Four checks, each against the real thing: the worker runs as a child process (`tiretrack
ingest`) on a private local broker and is sent SIGKILL and SIGTERM; the fuzzer is `ingest.fuzz`;
permutations go through `build_batch` and `Store.apply_batch` exactly as the worker's batches do;
the sessions check (`ingest.sessions`) opens real browser sessions on the dashboard while the
worker ingests at a fixed rate. The worker-process helpers and the permutation plumbing are
shared with the tests.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import duckdb
import orjson
from confluent_kafka import Message

from ingest.bench import BenchSettings, consume_all, kafka_args, machine, produce_backfill
from ingest.broker import LocalBroker, free_port, start_broker
from ingest.config import DLQ_SUFFIX, REPO_DIR, IngestSettings, KafkaSettings
from ingest.contract import INVENTORY, SHIPMENTS, Rejected, validate
from ingest.database import connect_file, connect_memory, string_literal
from ingest.errors import TiretrackError
from ingest.export import DATASETS, dataset_source
from ingest.fuzz import run_fuzz
from ingest.kafka import ensure_topics
from ingest.network import load_network
from ingest.sessions import SessionsSettings, run_sessions
from ingest.simulator import SimulationSettings, simulate
from ingest.store import Store
from ingest.worker import build_batch

CHECKS = ("crashes", "fuzz", "permutations", "sessions")
TOLERANCE_MINUTES = 60.0

# --- the worker as a process ------------------------------------------------------------------

# The worker logs these as it assigns the partitions, just before its consume loop starts, and
# when --stop-at-end stops the loop.
RUNNING_MARK = b"ingest.consumer: assigned "
END_MARK = b"every partition read to its end"
PROGRESS_INTERVAL = "1"
WORKER_START_TIMEOUT_S = 180.0
WORKER_STOP_TIMEOUT_S = 600.0
DEFAULT_BATCH_SIZE = IngestSettings.batch_size
MIN_BATCH_SIZE = 2000
STORED_MESSAGES_SQL = "SELECT messages FROM ingest_stats"
# What one committed transaction keeps together: the counters agree with the rows and with the
# event topics' Kafka positions (offsets are contiguous from 0: their sum is the messages read).
CONSISTENT_SQL = """
SELECT s.messages = (SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets
                     WHERE topic IN (?, ?))
   AND s.accepted = (SELECT count(*) FROM events)
   AND s.rejected = (SELECT count(*) FROM dead_letters WHERE topic IN (?, ?))
FROM ingest_stats AS s
"""


class ChaosError(TiretrackError):
    """A chaos step could not run (the broker, a worker or the fuzzer did not do its part)."""


def worker_command(kafka: KafkaSettings, db: Path, *extra: str) -> list[str]:
    """`tiretrack ingest` on `db`, logging its progress every second."""
    return [
        sys.executable, "-m", "ingest", "ingest", *kafka_args(kafka), "--db", str(db),
        "--progress-interval", PROGRESS_INTERVAL, *extra,
    ]  # fmt: skip


def start_worker(
    kafka: KafkaSettings, db: Path, log_path: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """The worker as a child process, its output appended to `log_path`."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            worker_command(kafka, db, *extra),
            cwd=REPO_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"TIRETRACK_LOG_LEVEL": "INFO"},
        )


def _log_size(log_path: Path) -> int:
    return log_path.stat().st_size if log_path.exists() else 0


def log_since(log_path: Path, offset: int) -> str:
    """What the log gained after byte `offset`."""
    with log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", errors="replace")


def _logged(log_path: Path, since: int, mark: bytes) -> bool:
    with log_path.open("rb") as handle:
        handle.seek(since)
        return mark in handle.read()


def wait_until_running(
    process: subprocess.Popen[bytes],
    log_path: Path,
    since: int,
    timeout_s: float = WORKER_START_TIMEOUT_S,
) -> bool:
    """Wait until the worker's log, after byte `since`, says it assigned its partitions: its
    consume loop starts. False when it exited first."""
    deadline = time.monotonic() + timeout_s
    while True:
        exited = process.poll() is not None
        running = _logged(log_path, since, RUNNING_MARK)
        if exited:
            return False
        if running:
            return True
        if time.monotonic() > deadline:
            raise ChaosError(
                f"the worker did not start within {timeout_s:.0f} s: {_tail(log_path)}"
            )
        time.sleep(0.02)


def _tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def stored_messages(db: Path) -> int:
    """Messages the database has stored (ingest_stats.messages); 0 before the first run."""
    if not db.exists():
        return 0
    con = connect_file(db, read_only=True)
    try:
        (messages,) = con.execute(STORED_MESSAGES_SQL).fetchone() or (0,)
    except duckdb.CatalogException:  # killed before its first migration committed
        return 0
    finally:
        con.close()
    return int(messages)


def db_state(db: Path, kafka: KafkaSettings) -> tuple[int, bool]:
    """(messages stored, whether counters, rows and Kafka positions agree) of a database at
    rest, read in one opening (after a kill each opening replays the write-ahead log)."""
    if not db.exists():
        return 0, True
    con = connect_file(db, read_only=True)
    try:
        (messages,) = con.execute(STORED_MESSAGES_SQL).fetchone() or (0,)
        row = con.execute(CONSISTENT_SQL, [*kafka.topics, *kafka.topics]).fetchone()
    except duckdb.CatalogException:  # killed before its first migration committed
        return 0, True
    finally:
        con.close()
    return int(messages), bool(row and row[0])


def run_to_end(kafka: KafkaSettings, db: Path, log_path: Path, *extra: str) -> float:
    """`tiretrack ingest --stop-at-end --no-serve` until it has read everything. Returns the
    seconds its loop ran (from the assignment of its partitions to the end of the last
    partition; start-up and the final checkpoint left out)."""
    since = _log_size(log_path)
    process = start_worker(kafka, db, log_path, "--stop-at-end", "--no-serve", *extra)
    try:
        wait_until_running(process, log_path, since)
        started = time.monotonic()
        ended = None
        while process.poll() is None:
            if ended is None and _logged(log_path, since, END_MARK):
                ended = time.monotonic()
            time.sleep(0.02)
        code = process.wait()
    finally:
        _reap(process)
    if code != 0:
        raise ChaosError(f"tiretrack ingest on {db.name} exited {code}: {_tail(log_path)}")
    return (ended or time.monotonic()) - started


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Interruption:
    """One run of the worker ended by a signal at a random moment."""

    signal: str  # SIGKILL or SIGTERM
    delay_s: float  # after the worker's loop started
    before: int  # messages stored when the run started
    after: int  # messages stored after it ended
    exit_code: int | None
    finished_first: bool  # the run read everything before the signal came
    clean: bool  # SIGTERM: exit code 0 and no traceback (a SIGKILL is always "clean")
    consistent: bool  # afterwards, counters agree with the stored rows and Kafka positions


def interrupt(
    kafka: KafkaSettings, db: Path, log_path: Path, sig: signal.Signals, delay_s: float,
    *extra: str, before: int | None = None,
) -> Interruption:  # fmt: skip
    """Start the worker (with --stop-at-end), let its loop run `delay_s`, send `sig`.
    `before`: the messages stored when it starts, if known."""
    before = stored_messages(db) if before is None else before
    since = _log_size(log_path)
    process = start_worker(kafka, db, log_path, "--stop-at-end", "--no-serve", *extra)
    try:
        finished_first = not wait_until_running(process, log_path, since)
        if not finished_first:
            time.sleep(delay_s)
            finished_first = process.poll() is not None
            if not finished_first:
                process.send_signal(sig)
        code = process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise ChaosError(
            f"the worker did not stop within {WORKER_STOP_TIMEOUT_S:.0f} s of {sig.name}"
        ) from e
    finally:
        _reap(process)
    if finished_first and code != 0:
        raise ChaosError(f"the worker exited {code} by itself: {_tail(log_path)}")
    output = log_since(log_path, since)
    clean = sig == signal.SIGKILL or finished_first or (code == 0 and "Traceback" not in output)
    after, agree = db_state(db, kafka)
    return Interruption(sig.name, delay_s, before, after, code, finished_first, clean, agree)


def interrupt_repeatedly(
    kafka: KafkaSettings,
    db: Path,
    log_path: Path,
    signals: Sequence[signal.Signals],
    rng: random.Random,
    *,
    total: int,
    ingest_s: float,
    extra: Sequence[str] = (),
    say: Callable[[str], None] = lambda _line: None,
) -> list[Interruption]:
    """Restart the worker after each signal in turn, each sent at a random moment. Delays are
    drawn so that the signals spread over the whole ingest: an uninterrupted loop takes about
    `ingest_s` for `total` messages; the mean delay is the time left divided among the signals
    left, and no delay reaches 60 % of the time left (a restarted worker may read faster than
    the estimate). Stops early once everything is stored."""
    done: list[Interruption] = []
    stored = stored_messages(db)
    for i, sig in enumerate(signals):
        if stored >= total:
            break  # nothing left to interrupt
        remaining_s = ingest_s * (total - stored) / total
        mean = remaining_s / (len(signals) - i + 1)
        delay = min(rng.uniform(0.0, 2 * mean), 0.6 * remaining_s)
        run = interrupt(kafka, db, log_path, sig, delay, *extra, before=stored)
        done.append(run)
        stored = run.after
        say(
            f"  {sig.name} {i + 1}/{len(signals)} after {run.delay_s:.2f}s: "
            f"{run.after:,} of {total:,} messages stored"
        )
        if run.finished_first:
            break
    return done


# --- comparing two databases ------------------------------------------------------------------

# The live views' columns that follow the clock (now()) rather than the events.
CLOCK_COLUMNS = ("delay_minutes", "is_late")
LIVE_VIEWS = {
    "shipments": "shipments_now",
    "inventory": "inventory_now",
    "in-transit": "in_transit_now",
}
# Columns that say when a run happened to read something (dead letters' received_at).
RUN_COLUMNS = ("received_at",)
COUNTERS = ("accepted", "duplicates", "rejected")
COUNTERS_SQL = "SELECT messages, accepted, duplicates, rejected FROM ingest_stats"
OFFSETS_SQL = 'SELECT topic, "partition", next_offset FROM kafka_offsets ORDER BY ALL'
EVENT_TIME_QUANTILES_SQL = "SELECT quantile_disc(occurred_at, [0.25, 0.5, 0.75]) FROM events"
# Rows only in the first database, by key with multiplicity (a row twice counts twice).
MISSING_EVENTS_SQL = (
    'SELECT count(*) FROM (SELECT event_id, topic, "partition", "offset" FROM {a}.events '
    'EXCEPT ALL SELECT event_id, topic, "partition", "offset" FROM {b}.events)'
)
MISSING_DEAD_LETTERS_SQL = (
    'SELECT count(*) FROM (SELECT topic, "partition", "offset" FROM {a}.dead_letters '
    'EXCEPT ALL SELECT topic, "partition", "offset" FROM {b}.dead_letters)'
)

Snapshot = dict[str, list[tuple[Any, ...]]]


def _select(dataset: str, source: str, skip: Iterable[str] = ()) -> str:
    """A dataset's columns from `source`, every column sorted (its key columns come first)."""
    left_out = {*skip, *RUN_COLUMNS}
    kept = ", ".join(f'"{c}"' for c in DATASETS[dataset].columns if c not in left_out)
    return f"SELECT {kept} FROM {source} ORDER BY ALL"


def snapshot(db: Path, times: Sequence[dt.datetime]) -> Snapshot:
    """Everything that must be identical after an interrupted and an uninterrupted run: every
    exported dataset (as of each time where as-of applies), the live views, offsets, counters."""
    con = connect_file(db, read_only=True)
    try:
        parts: Snapshot = {
            "counters": con.execute(COUNTERS_SQL).fetchall(),
            "offsets": con.execute(OFFSETS_SQL).fetchall(),
        }
        for name, view in LIVE_VIEWS.items():
            parts[f"{name} (live)"] = con.execute(_select(name, view, CLOCK_COLUMNS)).fetchall()
        for name, spec in DATASETS.items():
            for t in times if spec.as_of_applies else times[-1:]:
                source = dataset_source(name, t, TOLERANCE_MINUTES)
                label = f"{name} as of {_iso(t)}" if spec.as_of_applies else name
                parts[label] = con.execute(_select(name, source)).fetchall()
    finally:
        con.close()
    return parts


def differences(expected: Snapshot, got: Snapshot, *, ignore: Iterable[str] = ()) -> list[str]:
    """One line per part of two snapshots that differ (rows missing, extra, changed)."""
    skip = set(ignore)
    found = []
    for part in sorted(set(expected) | set(got)):
        if part in skip:
            continue
        a, b = expected.get(part, []), got.get(part, [])
        if a == b:
            continue
        missing = Counter(a) - Counter(b)
        extra = Counter(b) - Counter(a)
        first = next(iter(missing or extra), None)
        found.append(
            f"{part}: {sum(missing.values())} rows missing, {sum(extra.values())} unexpected"
            + (f" (first: {_short(first)})" if first is not None else " (same rows, other order)")
        )
    return found


def _short(value: object, limit: int = 240) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def event_time_quantiles(db: Path) -> list[dt.datetime]:
    """Three instants inside the stored history (its quartiles of event time)."""
    con = connect_file(db, read_only=True)
    try:
        row = con.execute(EVENT_TIME_QUANTILES_SQL).fetchone()
    finally:
        con.close()
    return [t for t in (row[0] if row and row[0] else []) if t is not None]


def lost_and_doubled(reference: Path, other: Path) -> tuple[int, int]:
    """Events and dead letters of `reference` missing from `other`, and those `other` holds in
    excess (stored twice, or never in the reference)."""
    con = connect_memory()
    try:
        con.execute(f"ATTACH {string_literal(str(reference))} AS a (READ_ONLY)")
        con.execute(f"ATTACH {string_literal(str(other))} AS b (READ_ONLY)")
        counts = []
        for a, b in (("a", "b"), ("b", "a")):
            (events,) = con.execute(MISSING_EVENTS_SQL.format(a=a, b=b)).fetchone() or (0,)
            (dead,) = con.execute(MISSING_DEAD_LETTERS_SQL.format(a=a, b=b)).fetchone() or (0,)
            counts.append(int(events) + int(dead))
    finally:
        con.close()
    return counts[0], counts[1]


def counters(db: Path) -> dict[str, int]:
    """ingest_stats' messages, accepted, duplicates and rejected."""
    con = connect_file(db, read_only=True)
    try:
        row = con.execute(COUNTERS_SQL).fetchone()
    finally:
        con.close()
    return dict(zip(("messages", *COUNTERS), (int(v) for v in row or (0, 0, 0, 0)), strict=True))


@dataclass(frozen=True)
class Comparison:
    """An interrupted run (b) against an uninterrupted one (a)."""

    lost: int
    doubled: int
    differences: list[str]
    parts_compared: int
    counters_a: dict[str, int]
    counters_b: dict[str, int]

    @property
    def counters_equal(self) -> bool:
        return all(self.counters_a[c] == self.counters_b[c] for c in COUNTERS)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.doubled and not self.differences and self.counters_equal


def compare_runs(a: Path, b: Path, times: Sequence[dt.datetime]) -> Comparison:
    """Compare two databases that read the same input: events and dead letters (lost, doubled),
    the snapshot's parts, and the counters accepted, duplicates and rejected. The messages
    counted are returned, not compared: a message redelivered after a kill may be read twice
    (with offsets committed in the same transaction as the batch, it is counted once)."""
    ignore = ("counters",)  # compared below, field by field
    snap_a, snap_b = snapshot(a, times), snapshot(b, times)
    lost, doubled = lost_and_doubled(a, b)
    return Comparison(
        lost=lost,
        doubled=doubled,
        differences=differences(snap_a, snap_b, ignore=ignore),
        parts_compared=len(snap_a) - len(ignore),
        counters_a=counters(a),
        counters_b=counters(b),
    )


# --- check 1: crashes ---------------------------------------------------------------------------


@dataclass
class CrashReport:
    """What the crash check did and found (the JSON report's `checks.crashes`)."""

    events: int = 0
    batch_size: int = 0
    kills_requested: int = 0
    sigterms_requested: int = 0
    kills: int = 0
    kills_survived: int = 0
    sigterms: int = 0
    sigterms_clean: int = 0
    runs_that_stored_a_batch: int = 0
    interrupted_runs: int = 0
    lost: int = 0
    doubled: int = 0
    differences: list[str] = field(default_factory=list)
    parts_compared: int = 0
    as_of_times: list[str] = field(default_factory=list)
    counters_uninterrupted: dict[str, int] = field(default_factory=dict)
    counters_interrupted: dict[str, int] = field(default_factory=dict)
    redelivered_messages_counted: int = 0
    dlq_topic_messages: int = 0
    dlq_topic_repeats: int = 0
    seconds_produce: float = 0.0
    seconds_uninterrupted: float = 0.0
    seconds_interrupted: float = 0.0
    interruptions: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None

    def line(self) -> str:
        return (
            f"kills survived: {self.kills_survived}/{self.kills_requested}, "
            f"events: {self.events:,}, lost: {self.lost:,}, doubled: {self.doubled:,}"
        )

    def details(self) -> list[str]:
        a, b = self.counters_uninterrupted, self.counters_interrupted
        return [
            f"SIGTERMs: {self.sigterms_clean}/{self.sigterms_requested} clean exits; "
            f"{self.runs_that_stored_a_batch} of {self.interrupted_runs} interrupted runs "
            f"stored a batch first (--batch-size {self.batch_size:,})",
            f"compared {self.parts_compared} parts (live views, every dataset now and at "
            f"{max(len(self.as_of_times) - 1, 0)} earlier times, dead letters, offsets): "
            f"{len(self.differences)} differ",
            f"counters accepted/duplicates/rejected: {_counts(a)} vs {_counts(b)}; messages "
            f"{a.get('messages', 0):,} vs {b.get('messages', 0):,} "
            f"(redelivered and counted: {self.redelivered_messages_counted:,})",
            f"dead-letter topics: {self.dlq_topic_messages:,} messages for both runs, "
            f"{self.dlq_topic_repeats:,} repeated (at least once by design)",
            f"uninterrupted ingest {self.seconds_uninterrupted:.0f}s; interrupted "
            f"{self.seconds_interrupted:.0f}s in {self.interrupted_runs + 1} runs",
        ]


def _counts(c: dict[str, int]) -> str:
    return "/".join(f"{c.get(k, 0):,}" for k in COUNTERS)


def run_crashes(
    kafka: KafkaSettings,
    work_dir: Path,
    *,
    events: int,
    kills: int,
    sigterms: int,
    seed: int,
    say: Callable[[str], None],
) -> CrashReport:
    """Produce `events` simulator messages; ingest them once without interruption (db A) and
    once killed and restarted again and again (db B); compare A and B. Both runs use a batch
    size of half the messages between two signals (between MIN_BATCH_SIZE and the worker's
    default), so that signals land inside and between transactions alike."""
    report = CrashReport(
        kills_requested=kills,
        sigterms_requested=sigterms,
        batch_size=min(
            DEFAULT_BATCH_SIZE, max(MIN_BATCH_SIZE, events // (kills + sigterms + 1) // 2)
        ),
    )
    extra = ("--batch-size", str(report.batch_size))
    rng = random.Random(seed)
    say(f"crashes: producing {events:,} simulator messages...")
    report.events, report.seconds_produce = produce_backfill(
        kafka, events, seed=seed, settings=BenchSettings(seed=seed), log_dir=work_dir
    )
    db_a, db_b = work_dir / "uninterrupted.duckdb", work_dir / "interrupted.duckdb"
    for db in (db_a, db_b):
        for path in (db, db.with_name(db.name + ".wal")):
            path.unlink(missing_ok=True)
    say("crashes: uninterrupted `tiretrack ingest --stop-at-end` (db A)...")
    report.seconds_uninterrupted = run_to_end(kafka, db_a, work_dir / "uninterrupted.log", *extra)
    total = stored_messages(db_a)
    say(f"  {total:,} messages in {report.seconds_uninterrupted:.1f}s")

    plan = [signal.SIGKILL] * kills + [signal.SIGTERM] * sigterms
    rng.shuffle(plan)
    say(f"crashes: db B, {kills} SIGKILLs and {sigterms} SIGTERMs at random moments...")
    started = time.monotonic()
    log_b = work_dir / "interrupted.log"
    runs = interrupt_repeatedly(
        kafka, db_b, log_b, plan, rng, total=total,
        ingest_s=report.seconds_uninterrupted, extra=extra, say=say,
    )  # fmt: skip
    run_to_end(kafka, db_b, log_b, *extra)
    report.seconds_interrupted = time.monotonic() - started
    report.interruptions = [asdict(r) for r in runs]
    report.interrupted_runs = len(runs)
    report.runs_that_stored_a_batch = sum(r.after > r.before for r in runs)
    report.kills = sum(r.signal == "SIGKILL" and not r.finished_first for r in runs)
    # Survived: the database was consistent after the kill, and the next start carried on.
    report.kills_survived = sum(
        r.signal == "SIGKILL" and not r.finished_first and r.consistent for r in runs
    )
    report.sigterms = sum(r.signal == "SIGTERM" and not r.finished_first for r in runs)
    report.sigterms_clean = sum(
        r.signal == "SIGTERM" and not r.finished_first and r.clean for r in runs
    )

    now = dt.datetime.now(dt.UTC)
    times = [*event_time_quantiles(db_a), now]
    report.as_of_times = [_iso(t) for t in times]
    say(f"crashes: comparing A and B now and as of {len(times) - 1} earlier times...")
    comparison = compare_runs(db_a, db_b, times)
    report.lost, report.doubled = comparison.lost, comparison.doubled
    report.differences = comparison.differences
    report.parts_compared = comparison.parts_compared
    report.counters_uninterrupted = comparison.counters_a
    report.counters_interrupted = comparison.counters_b
    report.redelivered_messages_counted = (
        comparison.counters_b["messages"] - comparison.counters_a["messages"]
    )
    report.dlq_topic_messages = consume_all(dead_letter_topics(kafka)).messages
    rejected = comparison.counters_a["rejected"] + comparison.counters_b["rejected"]
    report.dlq_topic_repeats = report.dlq_topic_messages - rejected
    report.failure = _crash_failure(report, comparison)
    return report


def _crash_failure(report: CrashReport, comparison: Comparison) -> str | None:
    if report.kills < report.kills_requested or report.sigterms < report.sigterms_requested:
        return (
            f"only {report.kills} SIGKILLs and {report.sigterms} SIGTERMs landed before the "
            "ingest finished; give more --events"
        )
    if report.kills_survived < report.kills:
        return (
            f"{report.kills - report.kills_survived} kill(s) left counters that disagree with "
            "the stored rows or offsets"
        )
    if report.lost or report.doubled:
        return f"{report.lost} lost and {report.doubled} doubled after the kills"
    if not comparison.counters_equal:
        return (
            f"counters differ: {_counts(comparison.counters_a)} uninterrupted, "
            f"{_counts(comparison.counters_b)} interrupted"
        )
    if comparison.differences:
        return f"the interrupted run differs: {comparison.differences[0]}"
    if report.sigterms_clean < report.sigterms:
        return f"{report.sigterms - report.sigterms_clean} SIGTERM(s) did not exit cleanly"
    if report.dlq_topic_repeats < 0:
        return f"{-report.dlq_topic_repeats} dead letters missing from the dead-letter topics"
    return None


# --- check 2: fuzz -------------------------------------------------------------------------------


@dataclass
class FuzzOutcome:
    """`ingest.fuzz.run_fuzz`'s report, plus the dead-letter topics read back."""

    produced: int
    expected: dict[str, int]
    counted: dict[str, int]
    large_messages: int
    worker_exit_code: int
    problems: list[str]
    dlq_topic_messages: int
    produce_s: float
    ingest_s: float
    worker_error: str | None  # the line of the worker's log that says why it failed

    @property
    def rejected(self) -> int:
        return self.counted.get("rejected", 0)

    @property
    def failure(self) -> str | None:
        if self.worker_exit_code != 0:
            return f"the fuzzed worker exited {self.worker_exit_code}: {self.worker_error}"
        if self.problems:
            return f"{len(self.problems)} fuzz problem(s), first: {self.problems[0]}"
        if self.dlq_topic_messages < self.rejected:
            return (
                f"{self.rejected - self.dlq_topic_messages} rejected message(s) missing from "
                "the dead-letter topics"
            )
        return None

    def line(self) -> str:
        # run_fuzz reports a problem for every rejected message missing from dead_letters and
        # for every counter that differs from what the messages were built to be.
        dead = "all dead-lettered" if self.failure is None else "NOT all dead-lettered"
        counts = "counts add up" if not self.problems else "counts DO NOT add up"
        return f"fuzzed: {self.produced:,} messages, rejected {self.rejected:,} {dead}, {counts}"


def run_fuzz_check(kafka: KafkaSettings, db: Path, count: int, seed: int) -> FuzzOutcome:
    """The fuzzer's own accounting, and every rejected message on the dead-letter topics; the
    worker's log is kept next to the database."""
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    report = run_fuzz(kafka, db, count, seed)
    db.with_name(db.name + ".log").write_text(report.worker_stderr, encoding="utf-8")
    return FuzzOutcome(
        produced=report.produced,
        expected=report.expected,
        counted=report.counted,
        large_messages=report.large_messages,
        worker_exit_code=report.worker_exit_code,
        problems=list(report.problems),
        dlq_topic_messages=consume_all(dead_letter_topics(kafka)).messages,
        produce_s=report.produce_s,
        ingest_s=report.ingest_s,
        worker_error=error_line(report.worker_stderr) if report.worker_exit_code else None,
    )


ERROR_LINE = re.compile(r"^(error: |[A-Za-z_][\w.]*(Error|Exception)\b)")


def error_line(log: str) -> str:
    """The last line of a log that names an error (a traceback's last line, or the one-line
    `error: ...`), else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    named = [line for line in lines if ERROR_LINE.match(line)]
    return _short((named or lines or ["(no output)"])[-1])


def dead_letter_topics(kafka: KafkaSettings) -> KafkaSettings:
    """Settings whose two topics are the dead-letter topics of `kafka`'s (to read them back)."""
    return KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        properties_file=kafka.properties_file,
        shipments_topic=kafka.shipments_topic + DLQ_SUFFIX,
        inventory_topic=kafka.inventory_topic + DLQ_SUFFIX,
    )


# --- check 3: permutations -------------------------------------------------------------------

SHIPMENTS_TOPIC = "shipment-events"
INVENTORY_TOPIC = "inventory-events"
FAMILIES = {SHIPMENTS_TOPIC: SHIPMENTS, INVENTORY_TOPIC: INVENTORY}
TOPIC_OF = {SHIPMENTS: SHIPMENTS_TOPIC, INVENTORY: INVENTORY_TOPIC}
# Ids that tie events to a shipment, a site or themselves: prefixed per copy of a stream.
ID_FIELDS = ("event_id", "shipment_id", "site_id", "origin_site_id", "destination_site_id")
# Dataset columns holding such ids; a row belongs to the copy its first id names.
ID_COLUMNS = ("shipment_id", "site_id", "origin_site_id", "destination_site_id")
NAMESPACE_END = "."
EVENTS_BY_NAMESPACE_SQL = (
    "SELECT split_part(event_id, ?, 1) || ?, count(*) FROM events GROUP BY ALL"
)
PERMUTATIONS_PER_STORE = 50
MAX_BATCHES = 5
DUPLICATE_SHARE = 0.05  # of a stream's messages delivered once more, on top of its own
# A simulator stream per store: an hour per wall second, 120 simulated hours of a small fleet.
SIM_TIME_SCALE = 3600.0
SIM_RATE = 20.0
SIM_SECONDS = 120.0
POSITION_SAMPLE = 8


@dataclass(frozen=True)
class Arrival:
    """One message of a stream as it would be consumed; event_id None when it is invalid."""

    family: str
    key: str
    value: bytes
    event_id: str | None


def arrival(family: str, key: str, value: bytes) -> Arrival:
    """A message of `family`, with its event_id if it is valid."""
    try:
        event_id: str | None = validate(family, value).event_id
    except Rejected:
        event_id = None
    return Arrival(family, key, value, event_id)


def copy_prefix(number: int) -> str:
    """The id prefix of copy `number` of a stream: `p0003.`."""
    return f"p{number:04d}{NAMESPACE_END}"


IN_ORDER = copy_prefix(0)


def namespaced(message: Arrival, prefix: str) -> Arrival:
    """The same message with every id prefixed, so copies of one stream share a store without
    sharing a shipment, a site or an event. Invalid messages stay as they are (rejected the
    same way in every copy)."""
    if message.event_id is None:
        return message
    event = orjson.loads(message.value)
    for name in ID_FIELDS:
        if isinstance(event.get(name), str):
            event[name] = prefix + event[name]
    copy = arrival(message.family, prefix + message.key, orjson.dumps(event))
    if copy.event_id != prefix + message.event_id:
        raise ChaosError(f"prefixing {message.event_id} with {prefix!r} made it invalid")
    return copy


def rearranged(stream: Sequence[Arrival], rng: random.Random, duplicates: float) -> list[Arrival]:
    """A random arrival order of the stream, a share of its messages delivered once more."""
    order = [*stream, *(m for m in stream if rng.random() < duplicates)]
    rng.shuffle(order)
    return order


def cut(messages: Sequence[Arrival], batches: int, rng: random.Random) -> list[list[Arrival]]:
    """Split into `batches` consecutive chunks at random points (a chunk may be empty)."""
    points = sorted(rng.randint(0, len(messages)) for _ in range(batches - 1))
    bounds = [0, *points, len(messages)]
    return [list(messages[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)]


@dataclass
class Stored:
    """Counters of stored batches (as the worker counts them)."""

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


def expected_counts(runs: Iterable[Sequence[Arrival]]) -> Stored:
    """What the store must count for these runs: every copy's distinct valid events accepted."""
    expected = Stored()
    for messages in runs:
        valid = [m.event_id for m in messages if m.event_id is not None]
        expected.messages += len(messages)
        expected.accepted += len(set(valid))
        expected.duplicates += len(valid) - len(set(valid))
        expected.rejected += len(messages) - len(valid)
    return expected


def store_side_by_side(store: Store, runs: Sequence[Sequence[Sequence[Arrival]]]) -> Stored:
    """Store several runs, each given as its chunks, in one store: batch i holds chunk i of every
    run, consumed (one partition per topic) and validated by the worker's own `build_batch`."""
    offsets = dict.fromkeys(FAMILIES, 0)
    stored = Stored()
    for i in range(max((len(chunks) for chunks in runs), default=0)):
        messages = []
        for chunks in runs:
            for m in chunks[i] if i < len(chunks) else ():
                topic = TOPIC_OF[m.family]
                messages.append(
                    Message(topic=topic, partition=0, offset=offsets[topic],
                            key=m.key.encode(), value=m.value)
                )  # fmt: skip
                offsets[topic] += 1
        batch = build_batch(messages, FAMILIES)
        result = store.apply_batch(batch, dt.datetime.now(dt.UTC))
        stored.messages += batch.messages
        stored.accepted += result.accepted
        stored.duplicates += result.duplicates
        stored.rejected += result.rejected
    return stored


Rows = list[dict[str, Any]]


def rows_by_namespace(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    as_of: dt.datetime | None,
    *,
    skip: Iterable[str] = (),
) -> dict[str, Rows]:
    """A dataset's rows (the live view, or as of a time) split by the namespace of their ids,
    with the prefixes removed: each copy's rows as if it had the store to itself."""
    source = (
        LIVE_VIEWS[dataset] if as_of is None else dataset_source(dataset, as_of, TOLERANCE_MINUTES)
    )
    cursor = con.cursor().execute(_select(dataset, source, skip))
    names = [d[0] for d in cursor.description or ()]
    ids = [c for c in ID_COLUMNS if c in names]
    split: dict[str, Rows] = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        owner = row[ids[0]]
        prefix = owner[: owner.index(NAMESPACE_END) + 1]
        for column in ids:
            value = row[column]
            if value is not None:
                if not value.startswith(prefix):
                    raise ChaosError(f"{dataset} row mixes namespaces: {row}")
                row[column] = value[len(prefix) :]
        split.setdefault(prefix, []).append(row)
    return split


def events_by_namespace(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Stored events per namespace."""
    rows = con.execute(EVENTS_BY_NAMESPACE_SQL, [NAMESPACE_END, NAMESPACE_END]).fetchall()
    return {prefix: int(n) for prefix, n in rows}


def simulator_stream(seed: int) -> list[Arrival]:
    """A short simulator stream with its own faults (duplicates, late and malformed messages),
    thinned: the simulator counts every SKU at every site at start-up and its trucks ping every
    few minutes, so only the stock its shipments move and one ping in POSITION_SAMPLE are kept
    (every other shipment event stays). Small streams let a store hold 50 copies at once."""
    rng = random.Random(seed)
    settings = SimulationSettings(
        seed=seed, rate=SIM_RATE, time_scale=SIM_TIME_SCALE,
        start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=SIM_SECONDS * 2),
        duration_s=SIM_SECONDS, duplicate_rate=0.02, out_of_order_rate=0.02, malformed_rate=0.005,
    )  # fmt: skip
    stream = [
        (m, orjson.loads(m.value) if m.event_id is not None else {})
        for m in (arrival(s.family, s.key, s.value) for s in simulate(settings, load_network()))
    ]
    moved = {
        (e[site], line["sku"])
        for _, e in stream
        if e.get("event_type") == "shipment.created"
        for site in ("origin_site_id", "destination_site_id")
        for line in e["lines"]
    }

    def keep(m: Arrival, e: dict[str, Any]) -> bool:
        if m.event_id is None:
            return True
        if m.family == INVENTORY:
            return (e["site_id"], e["sku"]) in moved
        return e["event_type"] != "shipment.position" or rng.random() < 1 / POSITION_SAMPLE

    return [m for m, e in stream if keep(m, e)]


def quiet_store() -> Store:
    """A new in-memory store, without logging its migrations."""
    store_log = logging.getLogger("ingest.store")
    level = store_log.level
    store_log.setLevel(logging.WARNING)
    try:
        return Store(Path(":memory:"))
    finally:
        store_log.setLevel(level)


@dataclass
class PermutationReport:
    """What the permutation check did and found (the JSON report's `checks.permutations`)."""

    permutations: int = 0
    identical: int = 0
    streams: int = 0
    messages_stored: int = 0
    views_compared: int = 0
    differing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failure: str | None = None

    def line(self) -> str:
        if self.identical == self.permutations:
            return f"permutations: {self.permutations} identical"
        return f"permutations: {self.identical} of {self.permutations} identical"


def comparison_times(stream: Sequence[Arrival]) -> list[dt.datetime]:
    """Quartiles of a stream's event times (valid events only)."""
    instants = sorted(
        validate(m.family, m.value).occurred_at for m in stream if m.event_id is not None
    )
    if not instants:
        return []
    return [instants[len(instants) * q // 4] for q in (1, 2, 3)]


def views_of(
    con: duckdb.DuckDBPyConnection, times: Sequence[dt.datetime | None]
) -> dict[str, dict[str, Rows]]:
    """Every dataset's rows by namespace: live (without the clock columns) and as of each time."""
    views = {}
    for t in times:
        for dataset in LIVE_VIEWS:
            label = f"{dataset} " + ("(live)" if t is None else f"as of {_iso(t)}")
            skip = CLOCK_COLUMNS if t is None else ()
            views[label] = rows_by_namespace(con, dataset, t, skip=skip)
    return views


def run_permutations(count: int, seed: int, say: Callable[[str], None]) -> PermutationReport:
    """`count` random arrival orders (shuffled, some messages twice, random batch cuts) of
    simulator streams, each compared with the same stream stored in order."""
    report = PermutationReport(permutations=count)
    rng = random.Random(seed)
    started = time.monotonic()
    done = 0
    while done < count:
        n = min(PERMUTATIONS_PER_STORE, count - done)
        stream = simulator_stream(seed * 1000 + report.streams)
        batches = rng.randint(1, MAX_BATCHES)
        prefixes = [copy_prefix(i) for i in range(n + 1)]  # the first one: in order
        copies = {p: [namespaced(m, p) for m in stream] for p in prefixes}
        in_order = copies.pop(IN_ORDER)
        size = math.ceil(len(in_order) / batches)
        runs = [[in_order[i : i + size] for i in range(0, len(in_order), size)]]
        arranged = {p: rearranged(c, rng, DUPLICATE_SHARE) for p, c in copies.items()}
        runs += [cut(arranged[p], batches, rng) for p in copies]
        store = quiet_store()
        try:
            stored = store_side_by_side(store, runs)
            expected = expected_counts([in_order, *arranged.values()])
            views = views_of(store.con, [None, *comparison_times(stream), dt.datetime.now(dt.UTC)])
            per_namespace = events_by_namespace(store.con)
        finally:
            store.close()
        if asdict(stored) != asdict(expected):
            report.failure = f"counters {asdict(stored)} differ from {asdict(expected)}"
        distinct = len({m.event_id for m in in_order if m.event_id is not None})
        if per_namespace.get(IN_ORDER) != distinct or not views["shipments (live)"].get(IN_ORDER):
            report.failure = (
                f"the in-order run of stream {report.streams} stored "
                f"{per_namespace.get(IN_ORDER, 0)} of its {distinct} events"
            )
        report.messages_stored += stored.messages
        report.views_compared += len(views)
        for prefix in copies:
            wrong = [label for label, rows in views.items()
                     if rows.get(prefix, []) != rows.get(IN_ORDER, [])]  # fmt: skip
            if per_namespace.get(prefix) != per_namespace.get(IN_ORDER):
                wrong.append("stored events")
            if wrong:
                report.differing.append(f"stream {report.streams} copy {prefix}: {wrong[0]}")
            else:
                report.identical += 1
        report.streams += 1
        done += n
        say(f"  {done}/{count} permutations, {report.identical} identical")
    report.seconds = time.monotonic() - started
    if report.differing and report.failure is None:
        report.failure = (
            f"{len(report.differing)} permutations differ from the in-order run, first: "
            + report.differing[0]
        )
    return report


# --- the whole run --------------------------------------------------------------------------


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _fresh_topics(bootstrap: str, name: str) -> KafkaSettings:
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        shipments_topic=f"chaos-{name}-shipments-{tag}",
        inventory_topic=f"chaos-{name}-inventory-{tag}",
    )
    ensure_topics(kafka, kafka.topics)
    return kafka


@dataclass(frozen=True)
class ChaosSettings:
    """What `tiretrack chaos` runs (its options); written to the JSON report."""

    events: int = 1_000_000
    kills: int = 50
    sigterms: int = 3
    fuzz_messages: int = 10_000
    permutations: int = 1000
    sessions: int = SessionsSettings.sessions
    session_rate: float = SessionsSettings.rate
    session_seconds: float = SessionsSettings.seconds
    seed: int = 42
    work_dir: Path | None = None
    skip: tuple[str, ...] = ()


def run_chaos(settings: ChaosSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the chosen checks; returns the report (the JSON document). The work directory is
    removed afterwards when it was a temporary one and every check passed."""
    own_dir = settings.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="tiretrack-chaos-")) if own_dir else settings.work_dir
    assert work_dir is not None
    work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": _iso(dt.datetime.now(dt.UTC)),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
        | {"work_dir": str(work_dir)},
        "checks": {},
    }
    broker: LocalBroker | None = None
    try:
        if {"crashes", "fuzz", "sessions"} - set(settings.skip):
            broker = start_broker("127.0.0.1", free_port(), log_file=work_dir / "broker.log")
        for check in CHECKS:
            if check in settings.skip:
                continue
            started = time.monotonic()
            try:
                outcome = _run_check(check, settings, broker, work_dir, say)
            except Exception as e:  # noqa: BLE001 (a check that breaks has failed: report it)
                text = str(e).strip().splitlines()[0] if str(e).strip() else ""
                reason = text if isinstance(e, TiretrackError) else f"{type(e).__name__}: {text}"
                outcome = {"ok": False, "failure": reason, "line": f"could not run: {reason}"}
            outcome["seconds"] = round(time.monotonic() - started, 1)
            results["checks"][check] = outcome
    finally:
        if broker is not None:
            broker.stop()
    failures = [f"{c}: {r['failure']}" for c, r in results["checks"].items() if not r["ok"]]
    results["ok"] = not failures
    results["failures"] = failures
    results["finished_at"] = _iso(dt.datetime.now(dt.UTC))
    results["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if own_dir and not failures:
        shutil.rmtree(work_dir, ignore_errors=True)
        results["settings"]["work_dir_kept"] = False
    else:
        results["settings"]["work_dir_kept"] = True
    return results


def _run_check(
    check: str,
    settings: ChaosSettings,
    broker: LocalBroker | None,
    work_dir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    if check == "permutations":
        say(f"permutations: {settings.permutations} random arrival orders through the store...")
        perms = run_permutations(settings.permutations, settings.seed, say)
        return asdict(perms) | {"ok": perms.failure is None, "line": perms.line()}
    assert broker is not None
    if check == "sessions":
        say(
            f"sessions: {settings.sessions} browser sessions on the dashboard for "
            f"{settings.session_seconds:g} s while producing {settings.session_rate:,.0f} "
            "events/s..."
        )
        sessions = run_sessions(
            _fresh_topics(broker.bootstrap_servers, "sessions"),
            work_dir / "sessions",
            SessionsSettings(
                sessions=settings.sessions, rate=settings.session_rate,
                seconds=settings.session_seconds, seed=settings.seed,
            ),
            say,
        )  # fmt: skip
        return asdict(sessions) | {
            "ok": sessions.failure is None,
            "line": sessions.line(),
            "details": sessions.details(),
        }
    if check == "crashes":
        crash_dir = work_dir / "crashes"
        crash_dir.mkdir(exist_ok=True)
        crashes = run_crashes(
            _fresh_topics(broker.bootstrap_servers, "crashes"), crash_dir,
            events=settings.events, kills=settings.kills, sigterms=settings.sigterms,
            seed=settings.seed, say=say,
        )  # fmt: skip
        return asdict(crashes) | {
            "ok": crashes.failure is None,
            "line": crashes.line(),
            "details": crashes.details(),
        }
    say(f"fuzz: {settings.fuzz_messages:,} fuzzed messages through the worker...")
    fuzzed = run_fuzz_check(
        _fresh_topics(broker.bootstrap_servers, "fuzz"),
        work_dir / "fuzz.duckdb",
        settings.fuzz_messages,
        settings.seed,
    )
    return asdict(fuzzed) | {"ok": fuzzed.failure is None, "failure": fuzzed.failure,
                             "line": fuzzed.line()}  # fmt: skip


def failure_reason(results: dict[str, Any]) -> str | None:
    """The one line a failed run ends with (the first failure, and how many more)."""
    failures = results["failures"]
    if not failures:
        return None
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return failures[0] + more


def render_report(results: dict[str, Any]) -> str:
    lines = [f"{'check':<13} {'status':<7} result", f"{'-' * 13} {'-' * 7} {'-' * 60}"]
    for check, outcome in results["checks"].items():
        status = "ok" if outcome["ok"] else "FAILED"
        lines.append(f"{check:<13} {status:<7} {outcome['line']}  ({outcome['seconds']:.0f}s)")
        for detail in outcome.get("details", []):
            lines.append(f"{'':<13} {'':<7} {detail}")
    for check in CHECKS:
        if check not in results["checks"]:
            lines.append(f"{check:<13} {'skipped':<7}")
    if results["settings"]["work_dir_kept"]:
        lines.append(f"\nlogs and databases kept in {results['settings']['work_dir']}")
    return "\n".join(lines)


# --- the command -----------------------------------------------------------------------------


@click.command()
@click.option(
    "--events",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    envvar="TIRETRACK_CHAOS_EVENTS",
    help="Simulator messages to produce for the crash check (with the bench's mix: about 2 % "
    "duplicates, 1 % out of order, 0.1 % malformed).",
)
@click.option(
    "--kills",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    envvar="TIRETRACK_CHAOS_KILLS",
    help="SIGKILLs sent to the worker at random moments, each followed by a restart.",
)
@click.option(
    "--sigterms",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    envvar="TIRETRACK_CHAOS_SIGTERMS",
    help="SIGTERMs mixed among the kills (the worker must finish its batch and exit 0).",
)
@click.option(
    "--fuzz-messages",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    envvar="TIRETRACK_CHAOS_FUZZ_MESSAGES",
    help="Fuzzed messages (valid, invalid and hostile) sent through the worker.",
)
@click.option(
    "--permutations",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar="TIRETRACK_CHAOS_PERMUTATIONS",
    help="Random arrival orders (shuffled, duplicated, cut into batches) of simulator streams "
    "stored and compared with the in-order run.",
)
@click.option(
    "--sessions",
    type=click.IntRange(min=1),
    default=SessionsSettings.sessions,
    show_default=True,
    envvar="TIRETRACK_CHAOS_SESSIONS",
    help="Browser sessions (Chromium) on the dashboard at once, each signed in on its own "
    "page, while the worker ingests at --session-rate.",
)
@click.option(
    "--session-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=SessionsSettings.rate,
    show_default=True,
    envvar="TIRETRACK_CHAOS_SESSION_RATE",
    help="Events per second produced while the sessions run.",
)
@click.option(
    "--session-seconds",
    type=click.FloatRange(min=1),
    default=SessionsSettings.seconds,
    show_default=True,
    envvar="TIRETRACK_CHAOS_SESSION_SECONDS",
    help="Seconds every session stays on its page once all of them show it.",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    envvar="TIRETRACK_CHAOS_SEED",
    help="Seed of the simulator, the kill moments, the fuzzer, the permutations and the "
    "sessions' producer.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="TIRETRACK_CHAOS_JSON",
    help="Also write the report as JSON to this file.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="TIRETRACK_CHAOS_WORK_DIR",
    help="Where databases and logs go (kept); default: a temporary directory, removed unless "
    "a check fails.",
)
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(CHECKS),
    envvar="TIRETRACK_CHAOS_SKIP",
    help="Leave out a check (repeat for several; in the environment, separate with spaces).",
)
def chaos(
    events: int,
    kills: int,
    sigterms: int,
    fuzz_messages: int,
    permutations: int,
    sessions: int,
    session_rate: float,
    session_seconds: float,
    seed: int,
    json_path: Path | None,
    work_dir: Path | None,
    skip: tuple[str, ...],
) -> None:
    """Check reliability at full size: kill -9 mid-ingest, fuzzed input, arrival orders,
    concurrent dashboard users."""
    settings = ChaosSettings(
        events=events, kills=kills, sigterms=sigterms, fuzz_messages=fuzz_messages,
        permutations=permutations, sessions=sessions, session_rate=session_rate,
        session_seconds=session_seconds, seed=seed, work_dir=work_dir, skip=tuple(skip),
    )  # fmt: skip
    results = run_chaos(settings, say=lambda line: click.echo(line, err=True))
    click.echo(render_report(results))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        click.echo(f"\nreport written to {json_path}")
    reason = failure_reason(results)
    if reason is not None:
        raise ChaosError(reason)
