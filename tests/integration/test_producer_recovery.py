"""Producers across a broker outage: `tiretrack simulate` keeps running while the local broker is
killed and restarted on the same port (losing its data), says so in one line, and publishes to
the restarted broker; a worker ingesting alongside keeps storing what it sends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ingest import chaos
from ingest.broker import LocalBroker, free_port, start_broker
from ingest.readers import open_reader
from tests.conftest import REPO, Topics

pytestmark = pytest.mark.integration

RATE = "100"
OUTAGE_LINE = "unreachable"
RESTART_LINE = re.compile(r"lost its data .*; (\d+) unacknowledged message\(s\) sent again")
SUMMARY_LINE = re.compile(r"(\d+) message\(s\) sent again, (\d+) lost")


class Simulator:
    """`tiretrack simulate` as a child process; its stderr is collected line by line."""

    def __init__(self, topics: Topics, broker: LocalBroker) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "simulate", *topics.cli_args(broker),
             "--rate", RATE, "--seed", "11"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ | {"TIRETRACK_LOG_LEVEL": "INFO"},
        )  # fmt: skip
        self.lines: list[str] = []
        self.out: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, matches: Callable[[str], bool], timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [line for line in self.lines if matches(line)]
            if found:
                return found[0]
            assert self.process.poll() is None, "\n".join(self.lines[-30:])
            time.sleep(0.1)
        raise AssertionError("expected line not logged:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as Ctrl-C would; returns the exit code and stdout."""
        if self.out is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            # Not communicate(): it would read stderr too, racing the reader thread for the
            # last lines (the exit summary). stdout holds one short line: no pipe can fill.
            self.process.wait(timeout=60)
            self.out = self.process.stdout.read()  # type: ignore[union-attr]
            self._reader.join(timeout=10)
        return self.process.returncode, self.out


def messages_on(broker: LocalBroker, topics: Topics, timeout_s: float = 20) -> int:
    """How many messages the broker holds on the two topics (read to the end of each)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": "producer-recovery-count",
            "enable.partition.eof": "true",
            "enable.auto.commit": "false",
            "fetch.wait.max.ms": "10",
        }
    )
    try:
        meta = consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in (topics.shipments, topics.inventory)
            if t in meta.topics
            for p in meta.topics[t].partitions
        ]
        if not partitions:
            return 0
        consumer.assign(partitions)
        count, at_end = 0, set[tuple[str | None, int | None]]()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                error = msg.error()
                if error is None:
                    count += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
        return count
    finally:
        consumer.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def accepted(db: Path) -> int:
    try:
        reader = open_reader(db)
    except Exception:  # the worker may still be starting; callers poll until a deadline
        return -1
    try:
        return int(reader.query("SELECT accepted FROM ingest_stats").column(0)[0].as_py())
    except Exception:  # same: not migrated or not serving yet
        return -1
    finally:
        reader.close()


def kill_and_restart(brokers: list[LocalBroker], simulator: Simulator) -> int:
    """Kill the broker; once the simulator has said it is unreachable, start a new, empty one on
    the same port and wait for the simulator to notice it lost its data. Returns how many
    messages the simulator says it sent again."""
    old = brokers[-1]
    old.kill()
    simulator.wait_for_line(lambda line: OUTAGE_LINE in line)
    assert simulator.process.poll() is None, "the simulator must keep running"
    brokers.append(start_broker(old.host, old.port))
    line = simulator.wait_for_line(lambda text: RESTART_LINE.search(text) is not None)
    match = RESTART_LINE.search(line)
    assert match is not None
    return int(match[1])


def test_simulator_survives_a_broker_restart() -> None:
    brokers = [start_broker("127.0.0.1", free_port())]
    topics = Topics("shipments-outage", "inventory-outage")
    simulator = Simulator(topics, brokers[0])
    try:
        wait_until(lambda: messages_on(brokers[-1], topics) > 0, "the first messages")
        resent = kill_and_restart(brokers, simulator)
        wait_until(
            lambda: messages_on(brokers[-1], topics) > resent, "new messages after the restart"
        )
        first = messages_on(brokers[-1], topics)
        wait_until(lambda: messages_on(brokers[-1], topics) > first, "publishing to go on")
        assert simulator.process.poll() is None
        code, out = simulator.stop()
    finally:
        simulator.stop()
        for broker in brokers:
            broker.stop()
    log = "\n".join(simulator.lines)
    print(f"simulator: {out.strip()}; sent again after the restart: {resent}")
    assert code == 0, log
    assert "simulator: " in out
    assert sum(OUTAGE_LINE in line for line in simulator.lines) == 1, log
    assert "Traceback" not in log
    assert not [line for line in simulator.lines if line.startswith("%")], "librdkafka noise"
    summary = SUMMARY_LINE.search(log)
    assert summary is not None, log
    assert int(summary[1]) >= resent > 0, "what waited during the outage is sent again"
    assert summary[2] == "0", "nothing lost"


def test_worker_keeps_storing_what_the_simulator_sends_after_a_broker_restart(
    tmp_path: Path,
) -> None:
    brokers = [start_broker("127.0.0.1", free_port())]
    topics = Topics("shipments-outage-worker", "inventory-outage-worker")
    db = tmp_path / "outage.duckdb"
    worker_log = tmp_path / "worker.log"
    worker = chaos.start_worker(
        topics.settings(brokers[0]), db, worker_log, "--serve-port", str(free_port())
    )
    simulator = Simulator(topics, brokers[0])
    try:
        wait_until(lambda: accepted(db) > 0, "the worker to store events", timeout_s=90)
        kill_and_restart(brokers, simulator)
        # The worker notices the reset itself (at its next topic check, up to 10 s later).
        wait_until(
            lambda: "the broker lost its data" in worker_log.read_text(),
            "the worker to notice the reset",
            timeout_s=90,
        )
        at_reset = accepted(db)
        wait_until(lambda: accepted(db) > at_reset + 200, "the worker to store new events", 90)
        after = accepted(db)
        code, _out = simulator.stop()
    finally:
        simulator.stop()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        for broker in brokers:
            broker.stop()
    print(f"accepted: {at_reset} when the worker noticed the reset, {after} later")
    assert code == 0, "\n".join(simulator.lines)
    assert worker.returncode == 0, worker_log.read_text()[-4000:]
