"""The capacity model: the demand one replica serves within the SLO, from the spec, learned online.

Three kinds of evidence refine the spec's figure. While requests are queueing, the replicas are saturated,
so throughput per ready replica *is* their capacity. When time to first token breaks its SLO while the
replicas are loaded (each at least ``TTFT_MIN_LOAD`` of the current estimate), the load per replica at that
moment, scaled by SLO/TTFT, is an upper bound; at a lighter load a slow TTFT is the prefill's own time (long
prompts, a large model), which more replicas would not shorten. When the KV cache is fuller than
``kv_saturation`` (the spec's ``slo.kvCacheSaturation``; 0.8, the threshold at which llm-d's saturation
analyzer and its endpoint picker call a replica saturated), the load scaled by ``kv_saturation``/usage is
one too: a replica whose cache is full preempts or stops admitting before its queue shows it. All are
smoothed (EWMA) and kept within ``[min_ratio, max_ratio]`` x the spec, so one noisy scrape cannot swing
the replica count.
"""

from __future__ import annotations

import math

TTFT_MIN_LOAD = 0.5  # the share of its capacity a replica serves for a slow TTFT to count as evidence of it


class CapacityModel:
    """Online estimate of per-replica capacity (demand units per second)."""

    def __init__(
        self,
        initial: float,
        smoothing: float = 0.1,
        min_samples: int = 5,
        ttft_slo_s: float | None = None,
        min_ratio: float = 0.25,
        max_ratio: float = 4.0,
        kv_saturation: float = 0.8,
    ) -> None:
        if not (initial > 0):
            raise ValueError("the initial capacity must be positive")
        self.initial = float(initial)
        self.smoothing = smoothing
        self.min_samples = min_samples
        self.ttft_slo_s = ttft_slo_s
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.kv_saturation = kv_saturation
        self.estimate_ = float(initial)
        self.n_samples_ = 0

    @property
    def capacity(self) -> float:
        """Current estimate: the spec's figure until ``min_samples`` saturated observations were seen."""
        return self.estimate_ if self.learned else self.initial

    @property
    def learned(self) -> bool:
        """True once ``min_samples`` saturated observations replaced the spec's figure."""
        return self.n_samples_ >= self.min_samples

    def resume(self, estimate: float, samples: int) -> None:
        """Carry on from ``estimate`` learned from ``samples`` saturated observations (what an operator restart
        finds in the status), kept within the bounds; ignored unless it was learned and is a positive figure."""
        if samples >= self.min_samples and math.isfinite(estimate) and estimate > 0:
            self.estimate_ = min(max(estimate, self.initial * self.min_ratio), self.initial * self.max_ratio)
            self.n_samples_ = samples

    def _learn(self, sample: float) -> None:
        sample = min(max(sample, self.initial * self.min_ratio), self.initial * self.max_ratio)
        if self.n_samples_ == 0:
            self.estimate_ = sample
        else:
            self.estimate_ += self.smoothing * (sample - self.estimate_)
        self.n_samples_ += 1

    def observe(
        self,
        throughput: float | None,
        waiting: float | None = None,
        ready_replicas: int | None = None,
        ttft_p90: float | None = None,
        kv_cache: float | None = None,
    ) -> float:
        """Feed one scrape (total throughput, queued requests, ready replicas, p90 TTFT, mean KV-cache
        usage 0..1); returns the estimate."""
        if throughput is None or not ready_replicas or ready_replicas <= 0 or not math.isfinite(throughput):
            return self.capacity
        per_replica = max(float(throughput), 0.0) / ready_replicas
        if waiting is not None and waiting > 0 and per_replica > 0:
            self._learn(per_replica)  # saturated: the throughput is the capacity
        elif (
            self.ttft_slo_s
            and ttft_p90 is not None
            and ttft_p90 > self.ttft_slo_s
            and per_replica > 0
            and per_replica >= TTFT_MIN_LOAD * self.capacity
        ):
            self._learn(per_replica * self.ttft_slo_s / ttft_p90)  # TTFT above its SLO: scale down to it
        elif kv_cache is not None and kv_cache > self.kv_saturation and per_replica > 0:
            self._learn(per_replica * self.kv_saturation / kv_cache)  # cache nearly full: scale down to the threshold
        return self.capacity
