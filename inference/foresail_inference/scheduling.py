"""A continuous-batching scheduler that gives a newly arrived request its first token sooner.

transformers' schedulers put every running decode into each step, so a request that arrives while C
requests decode gets its first token only after a step that costs as much as all of them (FIFO) or more
(prefill first also keeps the decodes). This one, when requests are waiting, runs one step of prefills
only (as vLLM's first scheduler did): the new prompt does not wait for C decodes. It never runs two such
steps in a row, so the running requests lose at most every other step and cannot starve under a stream
of arrivals.

Both schedulers here also note, per request, how many prompt tokens the prefix cache served (`--prefix-cache`:
transformers' block sharing), which transformers does not report; the engine reads that into vLLM's counters.
"""

from __future__ import annotations

from typing import Any

from transformers.generation.continuous_batching.requests import FutureRequestState, RequestState, RequestStatus
from transformers.generation.continuous_batching.scheduler import SCHEDULER_MAPPING, FIFOScheduler

NAME = "prefill_step_first"  # in transformers' scheduler table
FIFO = "foresail_fifo"  # transformers' FIFO, counting prefix-cache hits
SCHEDULERS = {"prefill-step-first": NAME, "fifo": FIFO}  # `foresail serve --scheduler` -> transformers' name


class CountingFIFOScheduler(FIFOScheduler):
    """transformers' FIFO scheduler that records the prompt tokens each request found in the prefix cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix_hits: dict[str, int] = {}  # request id -> cached prompt tokens; the engine pops them

    def _infer_request_tokens(self, state: RequestState, request_ids_to_remove_from_waiting: set[str]) -> list[int]:
        """transformers' own, which looks a pending request's prompt up in the prefix cache; note what it found."""
        before = state.position_offset
        tokens = super()._infer_request_tokens(state, request_ids_to_remove_from_waiting)
        if state.position_offset > before:
            self.prefix_hits[state.request_id] = state.position_offset - before
        return tokens


class PrefillStepFirstScheduler(CountingFIFOScheduler):
    """FIFO, except that a step with waiting requests runs their prefills alone (never two such steps in a row)."""

    def reset(self) -> None:
        """Reset the scheduler's state for a new generation loop."""
        super().reset()
        self.last_was_prefill_only = False

    def schedule_batch(self, token_budget: int, cache_budget: int
                       ) -> tuple[list[FutureRequestState] | None, bool, int, int]:
        """The prefills alone when requests are waiting and the last step was not already that; else FIFO."""
        if self.last_was_prefill_only or self.block_new_requests or not self.waiting_requests:
            self.last_was_prefill_only = False
            return super().schedule_batch(token_budget, cache_budget)
        candidates = [s for s in self.active_requests.values() if s.status == RequestStatus.PREFILLING]
        candidates += self._get_waiting_candidates()
        removed: set[str] = set()
        scheduled, _, fast_path, q_tokens, kv_read = self._process_candidates(
            candidates, token_budget, cache_budget, removed)
        self._cleanup_waiting_queue(removed)
        if not scheduled:  # nothing fitted (the cache is full): let FIFO decide, decodes included
            return super().schedule_batch(token_budget, cache_budget)
        self.last_was_prefill_only = True
        return scheduled, fast_path, q_tokens, kv_read


SCHEDULER_MAPPING.setdefault(NAME, PrefillStepFirstScheduler)
SCHEDULER_MAPPING.setdefault(FIFO, CountingFIFOScheduler)
