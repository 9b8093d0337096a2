"""The other commands end to end: simulate to a file and replay it, and the one-command demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from ingest.broker import free_port
from ingest.readers import open_reader
from tests.conftest import REPO, Topics, tiretrack

pytestmark = pytest.mark.integration


def test_simulate_to_file_then_replay_then_ingest(broker, topics: Topics, tmp_path: Path) -> None:
    recording = tmp_path / "run.jsonl"
    settings = ["--backfill", "--duration", "120", "--rate", "100", "--seed", "7",
                "--malformed-rate", "0.01"]  # fmt: skip
    result = tiretrack("simulate", *settings, "--out", str(recording))
    lines = recording.read_bytes().splitlines()
    assert f"{len(lines)} messages" in result.stdout
    assert all(json.loads(line)["family"] in ("shipments", "inventory") for line in lines)
    again = tmp_path / "again.jsonl"
    tiretrack("simulate", *settings, "--out", str(again))
    assert len(again.read_bytes().splitlines()) == len(lines)

    result = tiretrack("replay", *topics.cli_args(broker), str(recording))
    assert f"replayed {len(lines)} messages" in result.stdout
    db = tmp_path / "replayed.duckdb"
    tiretrack("ingest", *topics.cli_args(broker), "--db", str(db), "--stop-at-end", "--no-serve")
    con = duckdb.connect(str(db), read_only=True)
    messages, accepted, duplicates, rejected = con.execute(
        "SELECT messages, accepted, duplicates, rejected FROM ingest_stats"
    ).fetchone()
    con.close()
    assert messages == len(lines) == accepted + duplicates + rejected
    assert rejected > 0, "the malformed messages must reach the dead-letter table"


def test_demo_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    ports = {name: free_port() for name in ("broker", "dashboard", "serve")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "ingest", "demo", "--db", str(db),
         "--broker-port", str(ports["broker"]), "--dashboard-port", str(ports["dashboard"]),
         "--serve-port", str(ports["serve"]), "--rate", "200"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"TIRETRACK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{ports['dashboard']}"
        deadline = time.monotonic() + 90
        for line in demo.stdout:  # type: ignore[union-attr]
            if "open http" in line:
                assert url in line
                break
            assert time.monotonic() < deadline
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            assert response.status == 200
        # Events flow from the simulator through the worker into the served database.
        accepted = 0
        deadline = time.monotonic() + 60
        while accepted == 0 and time.monotonic() < deadline:
            time.sleep(1)
            reader = open_reader(db)
            assert reader.remote
            accepted = reader.query("SELECT accepted FROM ingest_stats").column(0)[0].as_py()
            reader.close()
        assert accepted > 0
    finally:
        demo.send_signal(signal.SIGINT)
        _out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    assert "Traceback" not in err
