"""Literal quoting for the Quack paths that take no bound parameters."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.database import (
    memory_size,
    number_literal,
    set_memory_limit,
    string_literal,
    timestamp_literal,
)
from ingest.errors import ConfigError


@given(st.text().filter(lambda s: "\x00" not in s))
def test_string_literal_round_trips_any_text(text: str) -> None:
    assert duckdb.sql(f"SELECT {string_literal(text)}").fetchone()[0] == text


def test_string_literal_refuses_nul() -> None:
    with pytest.raises(ValueError):
        string_literal("a\x00b")


@given(
    st.datetimes(
        timezones=st.timezones(),
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
    )
)
def test_timestamp_literal_is_the_same_instant(value: dt.datetime) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(f"SELECT {timestamp_literal(value)}").fetchone()[0]
    assert got == value.astimezone(dt.UTC)  # (ambiguous local times compare unequal otherwise)


def test_timestamp_literal_needs_an_offset() -> None:
    with pytest.raises(ValueError):
        timestamp_literal(dt.datetime(2026, 1, 1))


def test_number_literal_refuses_nan() -> None:
    assert number_literal(60) == "60.0"
    with pytest.raises(ValueError):
        number_literal(float("nan"))


@pytest.mark.parametrize(
    "text,size", [("1GB", "1GB"), (" 512 mb ", "512MB"), ("1.5gib", "1.5GiB"), ("200B", "200B")]
)
def test_memory_sizes_are_checked_and_normalised(text: str, size: str) -> None:
    assert memory_size(text) == size
    con = duckdb.connect()
    set_memory_limit(con, text)  # DuckDB accepts what memory_size lets through
    con.close()


@pytest.mark.parametrize("text", ["", "lots", "1 G", "-1GB", "1GB; DROP TABLE events"])
def test_a_bad_memory_size_says_what_to_give(text: str) -> None:
    with pytest.raises(ConfigError, match="give e.g. 1GB, 512MB or 2GiB"):
        memory_size(text)
