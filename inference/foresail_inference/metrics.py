"""Every metric the inference server exports, declared in one place.

The names and meanings follow vLLM's (docs/design/metrics.md, vllm/v1/metrics/loggers.py), so that
dashboards and the Foresail operator read every runtime the same way. Every metric carries the
label ``model_name`` (the served model name), like vLLM's. prometheus_client appends ``_total`` to
counters, so the counter declared as ``vllm:prompt_tokens`` is scraped as ``vllm:prompt_tokens_total``.

=====================================  =========  ==================================================
Scraped name                           Type       Meaning
=====================================  =========  ==================================================
vllm:num_requests_running              gauge      requests that have produced a token and not finished
vllm:num_requests_waiting              gauge      admitted requests still waiting for their first token
vllm:kv_cache_usage_perc               gauge      fraction (0-1) of the paged KV cache in use
vllm:prompt_tokens_total               counter    prompt tokens prefilled (counted at the first token)
vllm:generation_tokens_total           counter    tokens generated and served (equals the usage returned)
vllm:prefix_cache_queries_total        counter    with --prefix-cache: prompt tokens looked up in the prefix cache
vllm:prefix_cache_hits_total           counter    with --prefix-cache: prompt tokens the prefix cache served
vllm:request_success_total             counter    finished requests, by finished_reason stop|length|abort
vllm:time_to_first_token_seconds       histogram  arrival to first generated token
vllm:inter_token_latency_seconds       histogram  time between consecutive generated tokens
vllm:e2e_request_latency_seconds       histogram  arrival to last token
foresail:requests_rejected_total       counter    requests refused before generation, by reason (overloaded = 429,
                                                  unavailable = 503, invalid, too_large, unauthorized, error = an
                                                  unexpected error, 500)
foresail:model_load_seconds            gauge      seconds spent loading the model and its tokenizer
foresail:cold_start_seconds            gauge      process start to ready (model loaded and warmed)
=====================================  =========  ==================================================

"Running" differs slightly from vLLM's (scheduled, prefill included): transformers' manager exposes
no public scheduler state, so a request counts as waiting until its first token, one step later.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ["model_name"]

# vLLM's buckets (vllm/v1/metrics/loggers.py), kept identical so histograms aggregate across runtimes.
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0]

FINISHED_REASONS = ("stop", "length", "abort")
REJECT_REASONS = ("overloaded", "unavailable", "invalid", "too_large", "unauthorized", "error")


class ServerMetrics:
    """The server's metrics, bound to one served model name, in their own registry."""

    def __init__(self, model_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, name = self.registry, model_name
        self._running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                              LABELS, registry=r).labels(name)
        self._waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                              LABELS, registry=r).labels(name)
        self._kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                               LABELS, registry=r).labels(name)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                                     LABELS, registry=r).labels(name)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.",
                                         LABELS, registry=r).labels(name)
        self.prefix_cache_queries = Counter("vllm:prefix_cache_queries",
                                            "Prefix cache queries, in terms of number of queried tokens.",
                                            LABELS, registry=r).labels(name)
        self.prefix_cache_hits = Counter("vllm:prefix_cache_hits",
                                         "Prefix cache hits, in terms of number of cached tokens.",
                                         LABELS, registry=r).labels(name)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          LABELS + ["finished_reason"], registry=r)
        self.request_success = {reason: success.labels(name, reason) for reason in FINISHED_REASONS}
        self.time_to_first_token = Histogram("vllm:time_to_first_token_seconds",
                                             "Histogram of time to first token in seconds.",
                                             LABELS, buckets=TTFT_BUCKETS, registry=r).labels(name)
        self.inter_token_latency = Histogram("vllm:inter_token_latency_seconds",
                                             "Histogram of inter-token latency in seconds.",
                                             LABELS, buckets=ITL_BUCKETS, registry=r).labels(name)
        self.e2e_request_latency = Histogram("vllm:e2e_request_latency_seconds",
                                             "Histogram of e2e request latency in seconds.",
                                             LABELS, buckets=E2E_BUCKETS, registry=r).labels(name)
        rejected = Counter("foresail:requests_rejected", "Requests refused before generation, by reason.",
                           LABELS + ["reason"], registry=r)
        self.rejected = {reason: rejected.labels(name, reason) for reason in REJECT_REASONS}
        self.model_load_seconds = Gauge("foresail:model_load_seconds",
                                        "Seconds spent loading the model and its tokenizer.",
                                        LABELS, registry=r).labels(name)
        self.cold_start_seconds = Gauge("foresail:cold_start_seconds",
                                        "Seconds from process start to ready (model loaded and warmed).",
                                        LABELS, registry=r).labels(name)

    def track_state(self, running: Callable[[], float], waiting: Callable[[], float],
                    kv_usage: Callable[[], float]) -> None:
        """Read the state gauges from the engine at every scrape."""
        self._running.set_function(running)
        self._waiting.set_function(waiting)
        self._kv_usage.set_function(kv_usage)
