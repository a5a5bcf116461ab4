"""One background task that reads every deployment's signals from Prometheus each period.

The decision loops look their deployment up here instead of querying Prometheus themselves, so
the number of queries per period is fixed (one per signal, over every runtime's names), whatever the number of
LLMDeployments.
"""

from __future__ import annotations

import asyncio
import logging
import time

from foresail_operator import telemetry
from foresail_operator.metrics import MAX_RATE, Key, MetricsError, PrometheusSource, Signals
from foresail_operator.runtimes import RUNTIMES

NOT_READ_YET = "NoData: metrics have not been read yet"  # the reason before the first read
_RATE_WINDOW_NOTE = "FORESAIL_RATE_WINDOW (chart: operator.rateWindow) must span at least two scrape intervals"


class Collector:
    """Holds the latest snapshot of all signals and why it is missing, if it is."""

    def __init__(self, source: PrometheusSource | None, period_s: float = 15.0) -> None:
        self.source = source
        self.period_s = period_s
        self.snapshot: dict[Key, Signals] = {}
        self.taken_at: float | None = None  # when the snapshot's queries were evaluated
        self.read_at: float | None = None  # when its answers were all in: how fresh the collector keeps it
        self.read_s = 0.0  # how long that took: the next read comes a period and about as long after it
        self.error: str | None = None if source else (
            "NotConfigured: no Prometheus URL is configured (--prometheus-url or FORESAIL_PROMETHEUS_URL)")

    async def collect_once(self) -> None:
        """Take one snapshot; on failure keep the reason (the loops then hold capacity)."""
        if self.source is None:
            return
        started = time.perf_counter()
        try:
            at, self.snapshot = await asyncio.to_thread(self._take)
        except MetricsError as exc:
            reason = "PrometheusUnavailable"
            self.error = f"{reason}: {exc}"
            telemetry.METRICS_ERRORS.labels(reason).inc()
        else:
            self.taken_at, self.read_at, self.error = at, time.time(), None
            self.read_s = time.perf_counter() - started
        telemetry.COLLECT_SECONDS.observe(time.perf_counter() - started)

    def _take(self) -> tuple[float, dict[Key, Signals]]:
        """A snapshot and the time its queries are evaluated at (they all are at its start, not when the last
        answer came: a slow answer would otherwise stretch the time between two snapshots that the growth of the
        requests in the system is divided by, and make its figures look newer than they are)."""
        assert self.source is not None
        at = time.time()
        return at, self.source.snapshot(RUNTIMES, at)

    async def run(self, logger: logging.Logger) -> None:
        """Collect every period until cancelled; log when metrics go and come back. An unexpected exception is
        logged with its traceback (once while it repeats) and kept as the reason, and does not end the task."""
        was_error: str | None = None
        while True:
            try:
                await self.collect_once()
            except Exception as exc:  # a fault no check foresaw: say so, keep the reason and try again next period
                self.error = f"CollectorFailed: {type(exc).__name__}: {exc}"
                telemetry.METRICS_ERRORS.labels("CollectorFailed").inc()
                if self.error != was_error:
                    logger.exception("metrics unavailable, holding capacity: %s", self.error)
            else:
                if self.error and self.error != was_error:
                    logger.warning("metrics unavailable, holding capacity: %s", self.error)
                elif was_error and not self.error:
                    logger.info("metrics are back after: %s", was_error)
            was_error = self.error
            await asyncio.sleep(self.period_s)

    def lookup(self, key: Key, replicas: int) -> tuple[Signals | None, str | None]:
        """The signals of one deployment, or None and the reason they are missing."""
        if self.error:
            return None, self.error
        if self.read_at is None:
            return None, NOT_READ_YET
        age = time.time() - self.read_at
        if age > 3 * self.period_s + self.read_s:  # a Prometheus slower than two periods that answers is not stale
            return None, f"MetricsStale: the last good read is {age:.0f} s old"
        window = self.source.window if self.source is not None else ""
        if key in self.snapshot:
            signals = self.snapshot[key]
            if signals.requests is None and signals.arrivals is None:  # a series, but no usable value
                return None, (f"NoData: Prometheus answered no usable demand for {key[0]}/{key[1]} (NaN, Inf "
                              f"or above {MAX_RATE:g}), or no rate of its request counter over {window}: "
                              f"{_RATE_WINDOW_NOTE}")
            return signals, None  # the pods' signals, or only the activator's count of arrivals
        if replicas == 0:  # nothing runs, so nothing is served: demand seen is zero
            return Signals(requests=0.0, running=0.0, waiting=0.0), None
        return None, (f"NoSeries: Prometheus has no series for {key[0]}/{key[1]} yet, or none with a rate over "
                      f"{window}: {_RATE_WINDOW_NOTE}")
