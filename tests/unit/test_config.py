"""Settings: properties files, loopback detection, and the librdkafka dicts built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import FORCED_CONSUMER_PROPS, KafkaSettings, is_loopback, read_properties
from ingest.errors import ConfigError


def test_properties_file_is_parsed_like_java(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# Confluent Cloud\n! also a comment\n\nbootstrap.servers=pkc-1.example:9092\n"
        "security.protocol = SASL_SSL\nsasl.password=a=b:c\nsasl.mechanisms: PLAIN\n",
        encoding="utf-8",
    )
    assert read_properties(path) == {
        "bootstrap.servers": "pkc-1.example:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "a=b:c",
        "sasl.mechanisms": "PLAIN",
    }


def test_bad_properties_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=x:1\njust words\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"client.properties:2: expected key=value"):
        read_properties(path)


@pytest.mark.parametrize(
    "servers,expected",
    [
        ("127.0.0.1:9092", True),
        ("localhost:9092,127.0.0.2:9093", True),
        ("[::1]:9092", True),
        ("broker.example.com:9092", False),
        ("127.0.0.1:9092,10.0.0.5:9092", False),
    ],
)
def test_loopback_detection(servers: str, expected: bool) -> None:
    assert is_loopback(servers) is expected


def test_local_tuning_only_for_loopback_and_forced_props_win(tmp_path: Path) -> None:
    local = KafkaSettings(bootstrap_servers="127.0.0.1:9092").consumer_config("g")
    assert local["session.timeout.ms"] == "2000"
    path = tmp_path / "c.properties"
    path.write_text("bootstrap.servers=kafka.example:9092\nenable.auto.commit=true\n")
    remote = KafkaSettings(properties_file=path).consumer_config("g")
    assert "session.timeout.ms" not in remote
    assert remote["bootstrap.servers"] == "kafka.example:9092"
    for key, value in FORCED_CONSUMER_PROPS.items():
        assert remote[key] == value


def test_same_topic_twice_is_refused() -> None:
    with pytest.raises(ConfigError):
        KafkaSettings(shipments_topic="t", inventory_topic="t")
