"""The held-out acceptance path: produce to the real broker, `tiretrack ingest --stop-at-end`,
`tiretrack export`, and compare with the independent oracle."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest.database import load_extensions
from tests import oracle
from tests.conftest import Topics, produce, tiretrack
from tests.scenarios import contract_scenario, random_scenario
from tests.state_compare import assert_same_rows

pytestmark = pytest.mark.integration

INT_COLUMNS = {"planned_quantity", "delivered_quantity", "on_hand", "in_transit"}
FLOAT_COLUMNS = {"last_lat", "last_lon", "delay_minutes"}
TIME_COLUMNS = {
    "planned_departure", "planned_arrival", "departed_at", "arrived_at", "eta", "last_position_at",
}  # fmt: skip


def parse_csv(path: Path) -> list[dict[str, Any]]:
    """Read an export CSV back into typed values, checking the contract's cell formats."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, text in raw.items():
                if text == "":
                    row[key] = None
                elif key in INT_COLUMNS:
                    row[key] = int(text)
                elif key in FLOAT_COLUMNS:
                    row[key] = float(text)
                elif key == "is_late":
                    assert text in ("true", "false"), text
                    row[key] = text == "true"
                elif key in TIME_COLUMNS:
                    assert text.endswith("Z") and "T" in text, f"{key}={text} is not RFC 3339 UTC"
                    row[key] = dt.datetime.fromisoformat(text)
                else:
                    row[key] = text
            rows.append(row)
    return rows


def export_csv(tmp: Path, db: Path, dataset: str, as_of: dt.datetime | None) -> list[dict]:
    out = tmp / f"{dataset}-{len(list(tmp.iterdir()))}.csv"
    args = ["export", dataset, "--db", str(db), "--format", "csv", "--out", str(out)]
    if as_of is not None:
        args += ["--as-of", as_of.isoformat()]
    tiretrack(*args)
    return parse_csv(out)


def test_scenario_through_broker_matches_oracle(broker, topics: Topics, tmp_path: Path) -> None:
    scenario = contract_scenario(7)
    produce(topics.settings(broker), scenario.messages)
    db = tmp_path / "ingest.duckdb"
    run = tiretrack(
        "ingest",
        *topics.cli_args(broker),
        "--db",
        str(db),
        "--stop-at-end",
        "--no-serve",
        "--batch-size",
        "25",
    )
    assert "stopping (--stop-at-end)" in run.stderr
    con = duckdb.connect(str(db), read_only=True)
    positions = con.execute(
        "SELECT topic, sum(next_offset)::BIGINT, bool_and(at_end_since IS NOT NULL), "
        "bool_and(high_watermark IS NOT NULL) FROM kafka_positions GROUP BY topic"
    ).fetchall()
    con.close()
    # Every partition was recorded at its end, with the broker's (approximate) watermark.
    assert sum(n for _, n, _, _ in positions) == len(scenario.messages)
    assert all(at_end and marked for _, _, at_end, marked in positions), positions

    exports = tmp_path / "exports"
    exports.mkdir()
    chosen = scenario.as_of_times[:: max(1, len(scenario.as_of_times) // 6)]
    for t in [*chosen, scenario.as_of_times[-1]]:
        assert_same_rows(
            export_csv(exports, db, "shipments", t),
            oracle.derive_shipments(scenario.accepted, t),
            f"shipments {t}",
        )
        assert_same_rows(
            export_csv(exports, db, "inventory", t),
            oracle.derive_inventory(scenario.accepted, t),
            f"inventory {t}",
        )
        assert_same_rows(
            export_csv(exports, db, "in-transit", t),
            oracle.derive_in_transit(scenario.accepted, t),
            f"in-transit {t}",
        )

    # Every rejected message is accounted for, with its original bytes.
    out = exports / "dead.csv"
    tiretrack("export", "dead-letters", "--db", str(db), "--out", str(out))
    with out.open(newline="", encoding="utf-8") as handle:
        dead = list(csv.DictReader(handle))
    assert len(dead) == len(scenario.rejected)
    import base64

    assert Counter(base64.b64decode(r["value_base64"]) for r in dead) == Counter(scenario.rejected)
    assert all(r["reason"] and r["topic"] in (topics.shipments, topics.inventory) for r in dead)
    manifest = json.loads((exports / "dead.csv.manifest.json").read_text())
    assert manifest["rows"] == len(scenario.rejected)
    assert sum(sum(p.values()) for p in manifest["offsets"].values()) == len(scenario.messages)


def test_dead_letter_topic_gets_original_bytes_and_headers(
    broker, topics: Topics, tmp_path: Path
) -> None:
    scenario = contract_scenario(8)
    produce(topics.settings(broker), scenario.messages)
    db = tmp_path / "dlq.duckdb"
    tiretrack("ingest", *topics.cli_args(broker), "--db", str(db), "--stop-at-end", "--no-serve")
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": "t",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    got: list[tuple[bytes, dict[str, bytes]]] = []
    for topic in (topics.shipments, topics.inventory):
        meta = consumer.list_topics(topic + ".dlq", timeout=5).topics[topic + ".dlq"]
        consumer.assign([TopicPartition(topic + ".dlq", p, 0) for p in meta.partitions])
        ends = 0
        while ends < len(meta.partitions):
            msg = consumer.poll(5)
            assert msg is not None, "timed out reading the dead-letter topic"
            if msg.error():
                ends += 1
                continue
            got.append((msg.value(), dict(msg.headers())))
        consumer.unassign()
    consumer.close()
    assert Counter(v for v, _ in got) == Counter(scenario.rejected)
    for _, headers in got:
        assert headers["dlq.reason"]
        assert headers["dlq.topic"].decode() in (topics.shipments, topics.inventory)
        int(headers["dlq.partition"]), int(headers["dlq.offset"])


def test_export_formats_agree(broker, topics: Topics, tmp_path: Path) -> None:
    scenario = random_scenario(21)
    produce(topics.settings(broker), scenario.messages)
    db = tmp_path / "fmt.duckdb"
    tiretrack("ingest", *topics.cli_args(broker), "--db", str(db), "--stop-at-end", "--no-serve")
    t = scenario.as_of_times[-1]
    csv_rows = export_csv(tmp_path, db, "shipments", t)
    parquet_out = tmp_path / "s.parquet"
    tiretrack(
        "export",
        "shipments",
        "--db",
        str(db),
        "--as-of",
        t.isoformat(),
        "--format",
        "parquet",
        "--out",
        str(parquet_out),
    )
    table = pq.read_table(parquet_out)
    assert table.schema.field("planned_arrival").type.tz in ("UTC", "+00:00", "Etc/UTC")
    assert_same_rows(table.to_pylist(), csv_rows, "parquet vs csv")
    xlsx_out = tmp_path / "s.xlsx"
    tiretrack(
        "export",
        "shipments",
        "--db",
        str(db),
        "--as-of",
        t.isoformat(),
        "--format",
        "xlsx",
        "--out",
        str(xlsx_out),
    )
    assert xlsx_out.read_bytes()[:2] == b"PK"
    con = duckdb.connect()
    load_extensions(con, ("excel",))
    cur = con.execute("FROM read_xlsx(?, header = true, all_varchar = true)", [str(xlsx_out)])
    names = [d[0] for d in cur.description]
    assert names == list(csv_rows[0])
    with (tmp_path / next(p.name for p in tmp_path.glob("shipments-*.csv"))).open() as handle:
        csv_text = list(csv.reader(handle))[1:]
    xlsx_text = [["" if v is None else v for v in row] for row in cur.fetchall()]
    assert [row[:8] for row in xlsx_text] == [row[:8] for row in csv_text]  # ids, times as text
    # is_late is a real Excel boolean cell (TRUE/FALSE in Excel, 1/0 as text), null when empty.
    as_text = {"1": "true", "0": "false", "": ""}
    assert [as_text[r[15]] for r in xlsx_text] == [r[15] for r in csv_text]
    manifest = json.loads((tmp_path / "s.xlsx.manifest.json").read_text())
    assert manifest["as_of"] == t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert manifest["rows"] == len(csv_rows)
    assert "shipments_asof" in manifest["query"]


def test_bad_arguments_get_one_line_errors(tmp_path: Path) -> None:
    result = tiretrack(
        "export",
        "shipments",
        "--db",
        str(tmp_path / "none.duckdb"),
        "--out",
        str(tmp_path / "x.csv"),
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "does not exist" in result.stderr
    result = tiretrack("export", "shipments", "--as-of", "yesterday", "--out", "x.csv", check=False)
    assert result.returncode == 2 and "RFC 3339" in result.stderr
    result = tiretrack(
        "ingest",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--db",
        str(tmp_path / "x.duckdb"),
        "--no-serve",
        "--startup-timeout",
        "3",
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach Kafka" in result.stderr
