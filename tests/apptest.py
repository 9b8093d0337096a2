"""Helpers for Streamlit AppTest runs of single dashboard pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.components import FILTERS_KEY
from dashboard.filters import Filters


def assert_clean(at: AppTest) -> None:
    """The run raised nothing and showed no error element."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_page(
    monkeypatch: pytest.MonkeyPatch,
    page_file: Path,
    db_path: Path,
    filters: Filters | None = None,
    **query: str,
) -> AppTest:
    """Run one page on its own against a database, with URL parameters and sidebar filters."""
    monkeypatch.setenv("TIRETRACK_DB", str(db_path))
    page = AppTest.from_file(str(page_file), default_timeout=60)
    page.query_params.update(query)
    if filters is not None:
        page.session_state[FILTERS_KEY] = filters
    page.run()
    return page
