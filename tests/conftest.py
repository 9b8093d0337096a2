"""Shared fixtures: a real local broker (Tansu) for the session, unique topics, CLI runner."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.broker import LocalBroker, free_port, start_broker
from ingest.config import KafkaSettings
from ingest.kafka import EventProducer, ensure_topics

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    running = start_broker("127.0.0.1", free_port(), log_file=log)
    yield running
    running.stop()


@dataclass(frozen=True)
class Topics:
    shipments: str
    inventory: str

    def settings(self, broker: LocalBroker) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            shipments_topic=self.shipments,
            inventory_topic=self.inventory,
        )

    def cli_args(self, broker: LocalBroker) -> list[str]:
        return [
            "--bootstrap-servers", broker.bootstrap_servers,
            "--shipments-topic", self.shipments,
            "--inventory-topic", self.inventory,
        ]  # fmt: skip


_counter = itertools.count()


@pytest.fixture
def topics(broker: LocalBroker) -> Topics:
    """Fresh topic names per test (4 partitions each, created now)."""
    tag = f"{next(_counter)}-{uuid.uuid4().hex[:6]}"
    made = Topics(f"shipments-{tag}", f"inventory-{tag}")
    settings = made.settings(broker)
    ensure_topics(settings, settings.topics)
    return made


def produce(settings: KafkaSettings, messages: list[tuple[str, str, bytes]]) -> None:
    """Produce (family, key, value) messages in order and wait for every delivery."""
    producer = EventProducer(settings)
    for family, key, value in messages:
        producer.send(settings.topic_for(family), key, value)
    producer.flush()


@pytest.fixture
def produce_to() -> Callable[[KafkaSettings, list[tuple[str, str, bytes]]], None]:
    return produce


def tiretrack(
    *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real `tiretrack` command line in a child process."""
    result = subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"TIRETRACK_LOG_LEVEL": "INFO"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"tiretrack {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return tiretrack
