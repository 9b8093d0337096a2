"""Event text never becomes markup on the dashboard: an exception message, an ETA reason and a
dead letter's reason holding HTML, a javascript: link and Streamlit markdown are shown as literal
text on every page that shows them (AppTest, real DuckDB, events stored by the real worker code).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.formatting import escape_markdown
from ingest.network import DATA_DIR
from ingest.store import Store
from ingest.worker import build_batch
from tests.apptest import assert_clean, run_page

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "dashboard" / "app_pages"
SHIPMENTS_TOPIC = "shipment-events"
SHIPMENT = "SHP-XSS-1"
HOSTILE = (
    "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(2)> "
    "**bold** :red[red] $x^2$ &lt;b&gt; # heading"
)
REASON = "late <b>truck</b> [eta](javascript:alert(3)) _x_"
# Fragments that would be live markup if the text reached markdown or HTML unescaped.
MARKUP = (
    "<script",
    "javascript:alert",
    "<img",
    "<b>truck",
    "**bold**",
    ":red[red]",
    "&lt;b",
    "# heading",
    "_x_",
)


@dataclass
class Consumed:
    """The part of a confluent_kafka.Message that build_batch reads."""

    _offset: int
    _value: bytes

    def topic(self) -> str:
        return SHIPMENTS_TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return SHIPMENT.encode()


def _event(event_id: str, event_type: str, minutes_ago: float, **fields: Any) -> bytes:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": at.isoformat(),
            "source": "carrier",
            "shipment_id": SHIPMENT,
            **fields,
        }
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    now = dt.datetime.now(dt.UTC)
    values = [
        _event(
            "e1",
            "shipment.created",
            60,
            origin_site_id="PLT-DE-HAN",
            destination_site_id="DC-FR-LYS",
            carrier_id="CAR-NWS",
            mode="road",
            planned_departure=(now - dt.timedelta(minutes=50)).isoformat(),
            planned_arrival=(now + dt.timedelta(minutes=30)).isoformat(),
            lines=[{"sku": "P-2055516-91V-S", "quantity": 10}],
        ),
        _event("e2", "shipment.departed", 50),
        _event("e3", "shipment.position", 5, lat=50.0, lon=6.0, speed_kmh=80),
        _event(
            "e4",
            "shipment.exception",
            4,
            code="BREAKDOWN",
            severity="critical",
            message=HOSTILE,
            estimated_delay_minutes=200,
        ),  # fmt: skip
        _event(
            "e5",
            "shipment.eta_updated",
            3,
            eta=(now + dt.timedelta(hours=4)).isoformat(),
            reason=REASON,
        ),  # fmt: skip
        # Rejected: the reason quotes the unknown event type.
        _event("e6", HOSTILE, 2),
    ]
    path = tmp_path_factory.mktemp("escaping") / "escaping.duckdb"
    store = Store(path)
    try:
        store.load_reference(DATA_DIR)
        batch = build_batch(
            [Consumed(i, v) for i, v in enumerate(values)],  # type: ignore[misc]
            {SHIPMENTS_TOPIC: "shipments"},
        )
        assert len(batch.events) == 5 and len(batch.dead_letters) == 1
        store.apply_batch(batch, now)
    finally:
        store.close()
    return path


def rendered_as_markup(at: AppTest) -> list[str]:
    """Every text the page hands to Streamlit's markdown or HTML renderers."""
    texts = [
        e.value
        for group in (at.markdown, at.caption, at.subheader, at.title, at.header)
        for e in group
    ]
    texts += [e.value for group in (at.info, at.warning, at.error, at.success) for e in group]
    texts += [m.label for m in at.metric] + [m.proto.help for m in at.metric]
    texts += [h.proto.body for h in at.html]
    return texts


def live(text: str) -> str:
    """The text with every backslash-escaped character blanked: what markdown may interpret."""
    return re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", text)


def assert_no_live_markup(at: AppTest) -> None:
    for text in rendered_as_markup(at):
        for fragment in MARKUP:
            assert fragment not in live(text), f"{fragment!r} reaches markup in {text[:300]!r}"


def unescape_markdown(text: str) -> str:
    """What CommonMark shows for backslash-escaped ASCII punctuation: the character itself."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def test_map_shows_the_exception_message_and_eta_reason_literally(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = run_page(monkeypatch, PAGES / "live_map.py", db, shipment=SHIPMENT)
    assert_clean(at)
    assert_no_live_markup(at)
    # The summary's markdown holds every character escaped, so it reads as the message itself.
    facts = next(m.value for m in at.markdown if "Latest exception" in m.value)
    assert escape_markdown(HOSTILE) in facts
    assert HOSTILE in unescape_markdown(facts)
    # The ETA's tooltip (markdown too) quotes the carrier's reason literally.
    helps = [m.proto.help for m in at.metric if m.label.startswith("ETA")]
    assert len(helps) == 1 and escape_markdown(REASON) in helps[0]
    # The events table is plain text: the exact strings.
    details = " ".join(
        str(v) for df in at.dataframe if "Details" in df.value.columns for v in df.value["Details"]
    )
    assert HOSTILE in details and REASON in details
    # The timeline's hover text is read by plotly as HTML: escaped, it shows the text.
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    hover = " ".join(
        str(t) for fig in figures for trace in fig["data"] for t in trace.get("hovertext") or []
    )
    assert html.escape(HOSTILE, quote=False) in hover
    assert "<script" not in hover and "<img" not in hover
    # The map's tooltip is an HTML template whose values Streamlit escapes: kept as plain text.
    chart = at.get("deck_gl_json_chart")[0].proto
    trucks = next(layer for layer in json.loads(chart.json)["layers"] if layer["id"] == "trucks")
    assert any(HOSTILE in record["detail"] for record in trucks["data"])
    template = json.loads(chart.tooltip)["html"]
    assert "{detail}" in template and HOSTILE not in template


def test_delays_page_lists_the_message_as_plain_text(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = run_page(monkeypatch, PAGES / "delays.py", db)
    assert_clean(at)
    assert_no_live_markup(at)
    queues = [df.value for df in at.dataframe if "Message" in df.value.columns]
    assert len(queues) == 1
    assert list(queues[0]["Message"]) == [HOSTILE]


def test_pipeline_health_shows_the_reason_as_plain_text(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = run_page(monkeypatch, PAGES / "pipeline_health.py", db)
    assert_clean(at)
    assert_no_live_markup(at)
    reasons = [
        str(r) for df in at.dataframe if "reason" in df.value.columns for r in df.value["reason"]
    ]
    assert reasons and all("<script>alert(1)</script>" in r for r in reasons), reasons


def test_escaped_markdown_reads_as_the_original() -> None:
    for text in (HOSTILE, REASON, "a & b = c", "x\n===", "\\ backslash", ":material/home:"):
        assert unescape_markdown(escape_markdown(text)) == text
