"""Live signals of every LLMDeployment, read from Prometheus and normalised across runtimes.

One instant query per signal and metric-name set returns every deployment at once (grouped by the
`namespace` and `llmdeployment` target labels that the scrape config attaches), so the cost per
interval does not grow with the number of deployments. Runtimes that name a metric differently
(runtimes.py) are mapped onto the same canonical signals here. Two more read the activator's count of
arriving requests, the demand of a deployment whose pods report none, and the requests it holds; one
more counts the pods' scrape targets that are up, so that a deployment only partly scraped is told apart.
"""

from __future__ import annotations

import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from foresail.autoscaler.forecast import MAX_RATE
from foresail_operator.activation import ARRIVALS_METRIC, HELD_METRIC
from foresail_operator.runtimes import RUNTIMES

_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_HEADER_VALUE = re.compile(r"[\t -~]*")  # printable ASCII and tabs, as the chart's schema takes
MAX_POINTS = 10_000  # per range query: Prometheus refuses more than 11,000 points per series
QUERY_THREADS = 8  # a snapshot's queries run this many at a time: a slow Prometheus delays it by a few answers
# prometheus-api-client's own retries (3, backed off 0, 2 and 4 s, on these statuses), without sleeping a
# Retry-After: a rate-limiting Mimir or Thanos asks for minutes, during which the metrics would read as stale
RETRY = Retry(total=3, backoff_factor=1, status_forcelist=(408, 429, 500, 502, 503, 504),
              respect_retry_after_header=False)
# Prometheus's duration grammar: each unit at most once, from the largest (1h30m, not 30m1h)
DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
DURATION_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)

Key = tuple[str, str]  # (namespace, llmdeployment)
BY = "namespace, llmdeployment"
COUNTERS = ("requests", "prompt_tokens", "generation_tokens")
GAUGES = {"running": "sum", "waiting": "sum", "kv_cache": "avg"}


class MetricsError(Exception):
    """Prometheus could not be read, or answered something unusable."""


@dataclass
class Signals:
    """One deployment's live signals; None where the runtime or Prometheus has no value."""

    requests: float | None = None  # completed requests/s
    prompt_tokens: float | None = None  # tokens/s
    generation_tokens: float | None = None  # tokens/s
    running: float | None = None
    waiting: float | None = None
    kv_cache: float | None = None  # 0..1
    ttft_p90: float | None = None  # seconds
    arrivals: float | None = None  # requests/s arriving at the activator (None: it counts none for this one)
    held: float | None = None  # requests the activator's replicas hold, all together
    scraped: float | None = None  # the pods' scrape targets up (Prometheus's `up`); None: no target has the labels


def _series(names: list[str]) -> str:
    """The selector of the series of one metric name, or of several (the runtimes' names of one signal)."""
    return names[0] if len(names) == 1 else '{__name__=~"' + "|".join(sorted(names)) + '"}'


def queries(metric_names: dict[str, list[str]], window: str) -> dict[str, str]:
    """PromQL per canonical signal over the runtimes' metric names of each: one query per signal, so that the
    pods of a deployment that run two runtimes at once (a rollout from tgi to vllm) all count."""
    out: dict[str, str] = {}
    for signal in COUNTERS:
        if metric_names.get(signal):
            out[signal] = f"sum by ({BY}) (rate({_series(metric_names[signal])}[{window}]))"
    for signal, agg in GAUGES.items():
        if metric_names.get(signal):
            out[signal] = f"{agg} by ({BY}) ({_series(metric_names[signal])})"
    if metric_names.get("ttft"):
        out["ttft_p90"] = _ttft_p90(sorted(metric_names["ttft"]), window)
    return out


def _ttft_p90(names: list[str], window: str) -> str:
    """The p90 TTFT: one quantile per runtime's histogram, the largest where the pods run two (the runtimes'
    buckets differ, and a sum by `le` across them mixes the counts of different bounds: 3x the true p90)."""
    def p90(name: str) -> str:
        return f"histogram_quantile(0.9, sum by (le, {BY}) (rate({name}_bucket[{window}])))"

    if len(names) == 1:
        return p90(names[0])
    apart = " or ".join(f'label_replace({p90(name)}, "histogram", "{name}", "", "")' for name in names)
    return f"max by ({BY}) ({apart})"


def duration_seconds(text: str) -> float:
    """A Prometheus duration (``90s``, ``2m``, ``1h30m``) in seconds; ValueError unless it is one Prometheus takes
    in a query and it is above zero."""
    match = DURATION.fullmatch(text)
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), DURATION_S, strict=True) if n) if match else 0
    if seconds <= 0:
        raise ValueError(f"not a Prometheus duration above zero: {text!r}")
    return seconds


def _value(raw: object) -> float | None:
    """A finite float, or None for NaN, Inf, a magnitude above ``MAX_RATE`` (no signal read here is that
    large: a metrics fault) and anything that is not a number."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and abs(value) <= MAX_RATE else None


def _selector(key: Key) -> str:
    """The PromQL label selector of one deployment's series."""
    return f'{{namespace="{key[0]}",llmdeployment="{key[1]}"}}'


def _series_key(item: object) -> Key | None:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise MetricsError(f"Prometheus answered a malformed series: {str(item)[:200]}")
    labels = item["metric"]
    if "namespace" not in labels or "llmdeployment" not in labels:
        return None
    if not isinstance(labels["namespace"], str) or not isinstance(labels["llmdeployment"], str):
        raise MetricsError(f"Prometheus answered a malformed series: {str(item)[:200]}")
    return labels["namespace"], labels["llmdeployment"]


def _vector(answer: list) -> dict[Key, float | None]:
    """The value of each deployment in an instant query's answer; a MetricsError where two series have the same
    deployment (a `sum by` answers one each: a proxy merged answers, and which one is right is not known)."""
    out: dict[Key, float | None] = {}
    for item in answer:
        key = _series_key(item)
        value = item.get("value")
        if key is None or not isinstance(value, list) or len(value) != 2:
            continue
        if key in out:
            raise MetricsError(f"Prometheus answered two series for {key[0]}/{key[1]} in one query")
        out[key] = _value(value[1])
    return out


# requests' errors are OSErrors, as is its refusal of a CA bundle path that does not exist; a body that is not
# JSON a ValueError. prometheus-api-client reads a 200 answer as `json()["data"]["result"]`: one without them (a
# proxy's {"status": "error"}, "data": null, a JSON list) raises KeyError or TypeError.
QUERY_ERRORS = (PrometheusApiClientException, OSError, ValueError, KeyError, TypeError)


def _timeout(exc: BaseException) -> BaseException | None:
    """urllib3's timeout behind requests' error (retried or not; its text names the server and the timeout), or
    None."""
    first = exc.args[0] if isinstance(exc, requests.RequestException) and exc.args else None
    reason = getattr(first, "reason", first)
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a ConnectTimeoutError in urllib3 2
    return reason if isinstance(reason, urllib3.exceptions.TimeoutError) and not refused else None


def timed_out(exc: BaseException) -> bool:
    """Whether a query failed (or its MetricsError was raised) because Prometheus did not connect or answer in
    time."""
    return _timeout(exc.__cause__ if isinstance(exc, MetricsError) and exc.__cause__ else exc) is not None


def _failure(exc: Exception) -> str:
    """What went wrong with a query, in words: the error, that the answer had no data.result or was not JSON, or
    that it timed out (the server and the timeout, not the query's whole URL)."""
    if isinstance(exc, KeyError | TypeError):
        return f"the answer has no data.result ({type(exc).__name__}: {exc})"
    if isinstance(exc, json.JSONDecodeError):  # an HTML page of a proxy or a login, answered with 200
        return f"the answer is not JSON ({exc}): {exc.doc[:100]!r}"
    timeout = _timeout(exc)  # the last argument of urllib3's: its message, without the connection object
    return f"no answer in time: {timeout.args[-1] if timeout.args else timeout}" if timeout else str(exc)


class TokenFileAuth(requests.auth.AuthBase):
    """A bearer token read from a file at each request, as Prometheus's own `bearer_token_file`: a
    projected service account token is rotated in place, and the next query sends the new one."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            with open(self.path, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            raise MetricsError(f"cannot read the Prometheus token file {self.path}: {exc.strerror}") from None
        request.headers["Authorization"] = f"Bearer {token}"
        return request


def parse_headers(text: str) -> dict[str, str]:
    """``Name=value,Name2=value2`` (KEDA's customHeaders form) as a dict; ValueError names a bad entry."""
    headers = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        if not sep or not _HEADER_NAME.match(name.strip()):
            raise ValueError(f"{item!r} is not a header as Name=value (a name is letters, digits and -)")
        if not _HEADER_VALUE.fullmatch(value.strip()):  # requests refused it at every query: metrics never read
            raise ValueError(f"{item!r}: a header value is printable ASCII, without line breaks")
        headers[name.strip()] = value.strip()
    return headers


class PrometheusSource:
    """Reads signals through prometheus-api-client; every failure becomes a MetricsError.

    Authentication: a fixed bearer `token`, or a `token_file` read before each query. TLS: the system's
    trust store, or the PEM bundle `ca_file` for a Prometheus whose certificate a private CA signs.
    `headers` go with every query (a tenant: Mimir's and Cortex's `X-Scope-OrgID`). `retry`: when a query is
    sent again (``RETRY``).
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0, window: str = "2m",
                 token_file: str | None = None, ca_file: str | None = None,
                 headers: dict[str, str] | None = None, retry: Retry = RETRY) -> None:
        headers = dict(headers or {})
        if token and not token_file:
            headers["Authorization"] = f"Bearer {token}"
        session = requests.Session()
        session.verify = ca_file or True
        self.client = PrometheusConnect(url=url, headers=headers or None, session=session, timeout=timeout_s,
                                        auth=TokenFileAuth(token_file) if token_file else None, retry=retry)
        self.window = window

    def _query(self, promql: str, at: float | None = None) -> list:
        """An instant query's vector, evaluated at the Unix time ``at`` (Prometheus's now where None)."""
        try:
            result = self.client.custom_query(promql, params=None if at is None else {"time": f"{at:.3f}"})
        except QUERY_ERRORS as exc:
            raise MetricsError(f"Prometheus query failed: {_failure(exc)}") from exc
        if not isinstance(result, list):
            raise MetricsError(f"Prometheus answered a non-vector result: {str(result)[:200]}")
        return result

    def snapshot(self, runtimes: Iterable[str], at: float | None = None) -> dict[Key, Signals]:
        """Current signals of every deployment of the given runtimes (the queries run ``QUERY_THREADS`` at a
        time, all evaluated at the Unix time ``at``, default now)."""
        out: dict[Key, Signals] = {}
        names: dict[str, list[str]] = {}  # per signal, the runtimes' metric names of it
        for runtime in set(runtimes):
            for signal, name in RUNTIMES[runtime].metrics.items():
                if name and name not in names.setdefault(signal, []):
                    names[signal].append(name)
        promqls = list(queries(names, self.window).items())
        promqls.append(("arrivals", f"sum by ({BY}) (rate({ARRIVALS_METRIC}[{self.window}]))"))
        # last: only for deployments with demand
        promqls.append(("held", f"sum by ({BY}) ({HELD_METRIC})"))
        promqls.append(("scraped", f"sum by ({BY}) (up)"))
        when = [time.time() if at is None else at] * len(promqls)  # one time: a scrape between two mixes no states
        with ThreadPoolExecutor(max_workers=QUERY_THREADS) as pool:  # a failure drops the queries not started yet
            answers = list(pool.map(self._query, [promql for _, promql in promqls], when))
        for (signal, _), answer in zip(promqls, answers, strict=True):
            for key, value in _vector(answer).items():
                if signal not in ("held", "scraped") or key in out:
                    setattr(out.setdefault(key, Signals()), signal, value)
        return out

    def demand_history(
        self, key: Key, runtime: str, start: float, end: float, step_s: float, unit: str = "requests",
        tokens_per_request: float = 1000.0,
    ) -> tuple[list[float], list[float]]:
        """Completed requests/s (or prompt + generated tokens/s) of one deployment over [start, end], for
        the backfill after a restart, or the requests/s the activator counted where that is more or its pods
        reported nothing, as the decision loop reads demand (in tokens, at the tokens per request the pods'
        counters show over the span, else ``tokens_per_request``). Token counters are read one metric at a
        time and added up by timestamp (a single rate() over both would drop their names and collide)."""
        if end < start:  # end == start: one point (the last window of `foresail history` may hold one)
            return [], []
        total = self._history(key, runtime, start, end, step_s, unit)
        window = self._range_window(step_s)
        door = dict(self._range(f"sum(rate({ARRIVALS_METRIC}{_selector(key)}[{window}]))", start, end, step_s))
        if door:
            each = 1.0
            if unit == "tokens":
                requests_ = self._history(key, runtime, start, end, step_s, "requests")
                done = sum(requests_.values())
                each = sum(total.values()) / done if done > 0 else tokens_per_request
            for t, v in door.items():
                total[t] = max(total.get(t, 0.0), v * each)
        times = sorted(total)
        return times, [total[t] for t in times]

    def rate_history(self, key: Key, runtime: str, signal: str, start: float, end: float,
                     step_s: float) -> dict[float, float]:
        """One of the pods' counters (``requests``, ``prompt_tokens``, ``generation_tokens``) as a rate by
        timestamp; empty where the runtime has no such counter or Prometheus no points."""
        metric = RUNTIMES[runtime].metrics.get(signal)
        if not metric:
            return {}
        window = self._range_window(step_s)
        return dict(self._range(f"sum(rate({metric}{_selector(key)}[{window}]))", start, end, step_s))

    def _range_window(self, step_s: float) -> str:
        """The rate() window of a range query at ``step_s``: the live window, widened to a longer step (whole
        seconds, as the query steps), so that each point counts its whole step, not the window at its end."""
        step = max(1, int(step_s))
        return self.window if duration_seconds(self.window) >= step else f"{step}s"

    def _history(self, key: Key, runtime: str, start: float, end: float, step_s: float,
                 unit: str) -> dict[float, float]:
        """The pods' completed requests/s or tokens/s by timestamp."""
        signals = ("requests",) if unit == "requests" else ("prompt_tokens", "generation_tokens")
        total: dict[float, float] = {}
        for signal in signals:
            for t, value in self.rate_history(key, runtime, signal, start, end, step_s).items():
                total[t] = total.get(t, 0.0) + value
        return total

    def _range(self, promql: str, start: float, end: float, step_s: float) -> list[tuple[float, float]]:
        """The finite points of the first series a range query answers."""
        try:
            result = self.client.custom_query_range(
                promql, start_time=datetime.fromtimestamp(start, timezone.utc),
                end_time=datetime.fromtimestamp(end, timezone.utc), step=f"{max(1, int(step_s))}s")
        except QUERY_ERRORS as exc:
            raise MetricsError(f"Prometheus range query failed: {_failure(exc)}") from exc
        if not isinstance(result, list):
            raise MetricsError("Prometheus answered a non-matrix result")
        points = []
        for series in result[:1]:
            if not isinstance(series, dict):
                raise MetricsError(f"Prometheus answered a malformed series: {str(series)[:200]}")
            for point in series.get("values") or []:
                stamp, value = map(_value, point) if isinstance(point, list) and len(point) == 2 else (None, None)
                if stamp is not None and value is not None:
                    points.append((stamp, value))
        return points
