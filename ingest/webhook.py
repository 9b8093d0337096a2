"""Delivery of alert events to a webhook: a background thread, a bounded queue, retries.

The worker only ever calls `offer`, which never blocks: when the queue is full the oldest
waiting alert is dropped (and counted), so a slow or dead webhook costs ingest nothing. Each
alert is POSTed as JSON with a timeout; a connection error, a timeout, a 429 or a 5xx answer is
retried with exponential backoff, any other 4xx is given up at once (retrying cannot help).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ingest.errors import ConfigError

log = logging.getLogger(__name__)

USER_AGENT = "tiretrack-alerts/1"
RETRYABLE_STATUS = frozenset({408, 425, 429})
LOG_EVERY_S = 60.0  # a dead webhook is reported once a minute, not once per alert


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0
    queue_size: int = 1000

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--webhook-url {self.url!r} is not an http:// or https:// URL")
        if not self.timeout_s > 0:
            raise ConfigError(f"--webhook-timeout-s must be positive, got {self.timeout_s}")


class Webhook:
    """Posts queued payloads from its own thread; counters are read with `counters()`."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._last_drop_log = self._last_fail_log = -LOG_EVERY_S
        self._counters: dict[str, Any] = {
            "queued": 0,
            "delivered": 0,
            "failed": 0,
            "dropped": 0,
            "last_error": None,
            "last_error_at": None,
            "last_delivered_at": None,
        }
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.settings.url

    def offer(self, payload: bytes) -> None:
        """Queue one alert event for delivery; never blocks (drops the oldest when full)."""
        with self._wake:
            if len(self._queue) >= self.settings.queue_size:
                self._queue.popleft()
                self._counters["dropped"] += 1
                now = time.monotonic()
                if now - self._last_drop_log >= LOG_EVERY_S:
                    self._last_drop_log = now
                    log.warning(
                        "webhook %s is behind: queue full (%d alerts), dropping the oldest "
                        "(%d dropped so far)",
                        self.url,
                        self.settings.queue_size,
                        self._counters["dropped"],
                    )
            self._queue.append(payload)
            self._counters["queued"] += 1
            self._wake.notify()

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._counters)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread; alerts still queued are not delivered (the topic has them all)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not self._queue and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                payload = self._queue.popleft()
            self._deliver(payload)

    def _deliver(self, payload: bytes) -> None:
        delay = self.settings.backoff_s
        for attempt in range(self.settings.retries + 1):
            error, retryable = self._post(payload)
            now = dt.datetime.now(dt.UTC)
            if error is None:
                with self._lock:
                    self._counters["delivered"] += 1
                    self._counters["last_delivered_at"] = now
                return
            with self._lock:
                self._counters["last_error"] = error
                self._counters["last_error_at"] = now
            if not retryable or attempt == self.settings.retries:
                break
            if self._stopping.wait(delay):
                return
            delay *= 2
        with self._lock:
            self._counters["failed"] += 1
            failed = self._counters["failed"]
        if time.monotonic() - self._last_fail_log >= LOG_EVERY_S:
            self._last_fail_log = time.monotonic()
            log.warning("webhook %s: gave up on %d alert(s) so far: %s", self.url, failed, error)

    def _post(self, payload: bytes) -> tuple[str | None, bool]:
        """(error or None, whether a retry may help)."""
        request = urllib.request.Request(  # noqa: S310 (the URL's scheme is checked above)
            self.url,
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:  # noqa: S310
                response.read()
            return None, False
        except urllib.error.HTTPError as e:
            retryable = e.code >= 500 or e.code in RETRYABLE_STATUS
            return f"HTTP {e.code} {e.reason}", retryable
        except (urllib.error.URLError, OSError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            return f"{type(reason).__name__}: {reason}", True
