"""A tiny HTTP server that speaks Prometheus's instant-query API and can be told to misbehave.

Why a fake: a real Prometheus cannot be made to answer malformed JSON, a non-vector result to a
vector query, or to stall past a client's timeout on demand. In "good" mode it answers
`GET|POST /api/v1/query` exactly as Prometheus does (the envelope
`{"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[ts,"1.5"]}]}}`,
values as strings, NaN as "NaN", +Inf as "+Inf"); `test_prometheus_faults.py` checks that envelope
against a real Prometheus. Range queries (`/api/v1/query_range`) get a 404, unless `body` is set: then
every query, instant or range, gets a 200 with those bytes.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from foresail_operator.activation import ARRIVALS_METRIC, HELD_METRIC
from foresail_operator.runtimes import RUNTIMES

MODES = ("good", "nan", "inf", "huge", "empty", "malformed", "scalar", "matrix", "slow", "error")


VALUES = {"requests": "1.5", "prompt_tokens": "300", "generation_tokens": "75", "running": "1", "waiting": "0",
          "kv_cache": "0.2", "ttft": "0.12"}  # per canonical signal: 1.5 req/s, nothing queued


def signal_value(query: str, values: dict[str, str]) -> str:
    """A plausible value per signal (``values``), recognised by any runtime's metric name in the PromQL."""
    names = sorted(((name, signal) for runtime in RUNTIMES.values() for signal, name in runtime.metrics.items()
                    if name), key=lambda item: -len(item[0]))
    return next((values.get(signal, "1") for name, signal in names if name in query), "1")


class FakePrometheus:
    """Answers every instant query for the deployments in `series`, the way `mode` says; the queries of the
    activator's metrics only for those in `arrivals` (their rate) and `held` (the requests held), and the count of
    scrape targets up (`up`) only for those in `scraped`."""

    def __init__(self, series: list[tuple[str, str]], delay_s: float = 2.0, port: int = 0,
                 values: dict[str, str] | None = None, arrivals: dict[tuple[str, str], str] | None = None,
                 held: dict[tuple[str, str], str] | None = None,
                 scraped: dict[tuple[str, str], str] | None = None) -> None:
        self.series = series
        self.door = {ARRIVALS_METRIC: arrivals or {}, HELD_METRIC: held or {}}
        self.scraped = scraped or {}
        self.values = {**VALUES, **(values or {})}  # what "good" answers per canonical signal
        self.mode = "good"
        self.body: bytes | None = None  # when set, the 200 answer to every query, instant or range (a proxy's, say)
        self.delay_s = delay_s  # how long "slow" waits before answering well
        self.queries: list[str] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each query
        self.headers: list[dict[str, str]] = []  # every header of each query
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, params: dict[str, list[str]]) -> None:
                path = urlparse(self.path).path
                if path != "/api/v1/query" and not (path == "/api/v1/query_range" and fake.body is not None):
                    return self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
                query = (params.get("query") or [""])[0]
                if not query:
                    error = 'invalid parameter "query": unknown position: parse error: no expression found in input'
                    return self._send(400, json.dumps({"status": "error", "errorType": "bad_data",
                                                       "error": error}).encode())
                fake.queries.append(query)
                fake.authorizations.append(self.headers.get("Authorization"))
                fake.headers.append(dict(self.headers.items()))
                status, body = (200, fake.body) if fake.body is not None else fake.answer(query)
                self._send(status, body)

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(parse_qs(urlparse(self.path).query))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                self._answer({**parse_qs(urlparse(self.path).query), **form})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, query: str) -> tuple[int, bytes]:
        """Status and body for one query in the current mode."""
        mode, now = self.mode, round(time.time(), 3)
        if mode == "slow":
            time.sleep(self.delay_s)
        if mode == "malformed":
            return 200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":'
        if mode == "error":  # what Prometheus answers to a query it cannot run
            return 422, json.dumps({"status": "error", "errorType": "execution",
                                    "error": "query processing would load too many samples into memory"}).encode()
        if mode == "scalar":
            scalar = {"resultType": "scalar", "result": [now, "1.5"]}
            return 200, json.dumps({"status": "success", "data": scalar}).encode()
        door = self.scraped if query.endswith(" (up)") else next(
            (answers for metric, answers in self.door.items() if metric in query), None)
        values = door if door is not None else {key: signal_value(query, self.values) for key in self.series}
        values = {key: {"nan": "NaN", "inf": "+Inf", "huge": "1e300"}.get(mode, value) for key, value in values.items()}
        result = [] if mode == "empty" else [
            {"metric": {"namespace": ns, "llmdeployment": name},
             **({"values": [[now - 1, value], [now, value]]} if mode == "matrix" else {"value": [now, value]})}
            for (ns, name), value in values.items()]
        kind = "matrix" if mode == "matrix" else "vector"
        return 200, json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode()

    def start(self) -> "FakePrometheus":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
