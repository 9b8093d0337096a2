"""Hostile input through the real broker and the real worker: every message of the fuzz set
(ingest/fuzz.py) is accounted for, rejects reach `<topic>.dlq` with their original bytes and
headers, and every export of the result can be written and read back.

TIRETRACK_FUZZ_COUNT raises the number of messages (CI: 3000)."""

from __future__ import annotations

import csv
import json
import os
import uuid
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest.config import DLQ_SUFFIX
from ingest.database import connect_file
from ingest.fuzz import DUPLICATE, LARGE, REJECTED, VALID, FuzzReport, run_fuzz
from ingest.kafka import DEFAULT_PARTITIONS
from tests.conftest import Topics, tiretrack

pytestmark = pytest.mark.integration

FUZZ_COUNT = int(os.environ.get("TIRETRACK_FUZZ_COUNT", "3000"))
SEED = 5
DATASETS = ("shipments", "inventory", "in-transit", "dead-letters")
FORMATS = ("csv", "parquet", "xlsx")

Position = tuple[str, int, int]


@pytest.fixture(scope="module")
def fuzzed(broker, tmp_path_factory: pytest.TempPathFactory) -> tuple[FuzzReport, Topics, Path]:
    """One fuzz run shared by the module's tests: fresh topics (named like the `topics`
    fixture's, which is per test), a fresh database."""
    tag = uuid.uuid4().hex[:8]
    made = Topics(f"shipments-fuzz-{tag}", f"inventory-fuzz-{tag}")
    db = tmp_path_factory.mktemp("fuzz-db") / "fuzz.duckdb"
    kafka = replace(
        made.settings(broker),
        alerts_topic=f"alerts-fuzz-{tag}",
        alert_acks_topic=f"alert-acks-fuzz-{tag}",
    )
    report = run_fuzz(kafka, db, FUZZ_COUNT, SEED)
    print(report.summary())
    return report, made, db


def test_worker_survives_and_accounts_for_every_message(fuzzed) -> None:
    report, _, _ = fuzzed
    assert report.worker_exit_code == 0, report.worker_stderr[-4000:]
    assert "Traceback" not in report.worker_stderr
    assert "stopping (--stop-at-end)" in report.worker_stderr
    assert report.produced == FUZZ_COUNT
    assert report.large_messages >= 3, "the set has values over 1 MB"
    # Counters, events (exactly the valid messages, by topic/partition/offset) and dead letters
    # (exactly the rejected ones, original bytes, a one-line reason): checked by run_fuzz.
    assert report.problems == (), "\n".join(report.problems[:40])
    counted = report.counted
    assert counted["accepted"] + counted["duplicates"] + counted["rejected"] == report.produced
    assert counted["messages"] == report.produced
    assert (counted["accepted"], counted["duplicates"], counted["rejected"]) == (
        report.expected[VALID],
        report.expected[DUPLICATE],
        report.expected[REJECTED],
    )
    assert min(report.expected.values()) > FUZZ_COUNT // 20, "every outcome is well represented"


def test_dead_letter_table_has_every_reject_with_a_reason(fuzzed) -> None:
    report, _, db = fuzzed
    con = connect_file(db, read_only=True)
    try:
        rows = con.execute(
            'SELECT topic, "partition", "offset", reason FROM dead_letters'
        ).fetchall()
    finally:
        con.close()
    rejected = {
        (d.topic, d.partition, d.offset) for d in report.delivered if d.message.expected == REJECTED
    }
    assert sorted((t, p, o) for t, p, o, _ in rows) == sorted(rejected)
    assert all(reason and len(reason.splitlines()) == 1 for *_, reason in rows)


def read_dead_letter_topics(bootstrap: str, topics: Topics) -> list[tuple[bytes | None, ...]]:
    """Every message of both `.dlq` topics: (value, key, reason, topic, partition, offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "hostile-input-dlq",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: list[tuple[bytes | None, ...]] = []
    try:
        for topic in (topics.shipments + DLQ_SUFFIX, topics.inventory + DLQ_SUFFIX):
            consumer.assign([TopicPartition(topic, p, 0) for p in range(DEFAULT_PARTITIONS)])
            ends = 0
            while ends < DEFAULT_PARTITIONS:
                msg = consumer.poll(10)
                assert msg is not None, f"timed out reading {topic}"
                if msg.error():
                    ends += 1
                    continue
                headers = dict(msg.headers() or [])
                got.append(
                    (
                        msg.value(),
                        msg.key(),
                        headers.get("dlq.reason"),
                        headers.get("dlq.topic"),
                        headers.get("dlq.partition"),
                        headers.get("dlq.offset"),
                    )
                )
            consumer.unassign()
    finally:
        consumer.close()
    return got


def test_dead_letter_topics_hold_the_original_bytes_and_headers(broker, fuzzed) -> None:
    report, topics, _ = fuzzed
    got = read_dead_letter_topics(broker.bootstrap_servers, topics)
    by_origin: dict[Position, tuple[bytes | None, ...]] = {}
    for value, key, reason, topic, partition, offset in got:
        assert reason, "dlq.reason header"
        assert len(reason.decode("utf-8").splitlines()) == 1
        assert topic and partition and offset, "dlq.topic/partition/offset headers"
        origin = (topic.decode(), int(partition), int(offset))
        assert origin not in by_origin, f"{origin} dead-lettered twice"
        by_origin[origin] = (value, key)
    rejected = {
        (d.topic, d.partition, d.offset): d.message
        for d in report.delivered
        if d.message.expected == REJECTED
    }
    assert by_origin.keys() == rejected.keys()
    large = 0
    for origin, message in rejected.items():
        value, key = by_origin[origin]
        assert value == message.value, (origin, message.case, value and value[:80])
        assert (key or b"") == (message.key or b""), (origin, message.case)
        large += len(value or b"") > LARGE
    assert large >= 2, "dead letters over 1 MB reached the topic too"


def _readable(path: Path, fmt: str) -> int:
    """Rows in an export file, read back with the format's own reader."""
    if fmt == "csv":
        csv.field_size_limit(16_000_000)  # dead letters hold values over 1 MB
        with path.open(newline="", encoding="utf-8") as handle:
            return len(list(csv.DictReader(handle)))
    if fmt == "parquet":
        return pq.read_table(path).num_rows
    with zipfile.ZipFile(path) as archive:
        sheet = ET.fromstring(archive.read("xl/worksheets/sheet1.xml"))  # the XML must parse
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    return len(list(sheet.iter(f"{ns}row"))) - 1


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_export_of_the_result_is_written_and_readable(
    fuzzed, dataset: str, tmp_path: Path
) -> None:
    report, _, db = fuzzed
    for fmt in FORMATS:
        out = tmp_path / f"{dataset}.{fmt}"
        run = tiretrack("export", dataset, "--db", str(db), "--format", fmt, "--out", str(out))
        assert "Traceback" not in run.stderr
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        assert _readable(out, fmt) == manifest["rows"], fmt
        if dataset == "dead-letters":
            assert manifest["rows"] == report.expected[REJECTED]
        else:
            assert manifest["rows"] > 0
