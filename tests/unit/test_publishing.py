"""JSON Lines recording of simulator output round-trips every byte, malformed ones included."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest.errors import ConfigError
from ingest.publishing import from_jsonl, to_jsonl
from ingest.simulator import SimMessage


def test_round_trip_keeps_exact_bytes() -> None:
    at = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    messages = [
        SimMessage("shipments", "S1", b'{"event_id":"a"}', at),
        SimMessage("inventory", "SITE", b"\xff\xfe not utf-8", at),
        SimMessage("shipments", "S2", b"", at),
    ]
    lines = [to_jsonl(m) for m in messages]
    assert list(from_jsonl(lines, "mem")) == messages


def test_bad_line_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match="rec.jsonl:2"):
        list(
            from_jsonl(
                [
                    b'{"family":"shipments","key":"k","emit_at":"2026-01-01T00:00:00+00:00","value":"x"}',
                    b"nope",
                ],
                "rec.jsonl",
            )
        )
