"""A continuous-batching scheduler that gives a newly arrived request its first token sooner.

transformers' schedulers put every running decode into each step, so a request that arrives while C
requests decode gets its first token only after a step that costs as much as all of them (FIFO) or more
(prefill first also keeps the decodes). This one, when requests are waiting, runs one step of prefills
only (as vLLM's first scheduler did): the new prompt does not wait for C decodes. It never runs two such
steps in a row, so the running requests lose at most every other step and cannot starve under a stream
of arrivals.
"""

from __future__ import annotations

from transformers.generation.continuous_batching.requests import FutureRequestState, RequestStatus
from transformers.generation.continuous_batching.scheduler import SCHEDULER_MAPPING, FIFOScheduler

NAME = "prefill_step_first"  # in transformers' scheduler table
SCHEDULERS = {"prefill-step-first": NAME, "fifo": "fifo"}  # `foresail serve --scheduler` -> transformers' name


class PrefillStepFirstScheduler(FIFOScheduler):
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
