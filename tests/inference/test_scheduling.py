"""The prefill-step-first scheduler, driven by transformers' real ContinuousBatchingManager and the tiny model."""

from __future__ import annotations

import asyncio

import pytest
from transformers import ContinuousBatchingConfig, GenerationConfig
from transformers.generation.continuous_batching import RequestStatus

from foresail_inference.models import BUILTIN_TINY, load_model
from foresail_inference.scheduling import NAME


@pytest.fixture(scope="module")
def tiny():
    return load_model(BUILTIN_TINY, device="cpu")


async def test_a_new_request_is_prefilled_in_a_step_of_its_own(tiny) -> None:
    config = ContinuousBatchingConfig(page_size=16, num_blocks=64, max_batch_tokens=256,
                                      allow_block_sharing=False, scheduler_type=NAME)
    manager = tiny.model.init_continuous_batching(
        generation_config=GenerationConfig(do_sample=False, eos_token_id=-1), continuous_batching_config=config)
    manager.start()
    steps: list[list[str]] = []
    try:
        for _ in range(3000):  # the generation thread creates its batch processor at start (bounded wait)
            if manager.batch_processor is not None:
                break
            await asyncio.sleep(0.01)
        assert manager.batch_processor is not None, "the generation loop did not start in 30 s"
        scheduler = manager.batch_processor.scheduler
        schedule = scheduler.schedule_batch

        def recording(token_budget: int, cache_budget: int):  # a spy on the real scheduler: what each step runs
            result = schedule(token_budget, cache_budget)
            if result[0]:
                steps.append([f.state.request_id for f in result[0]])
            return result

        scheduler.schedule_batch = recording
        done: dict[str, asyncio.Future] = {}
        decoding: dict[str, asyncio.Event] = {}

        def submit(request_id: str, new_tokens: int) -> None:
            done[request_id] = asyncio.get_running_loop().create_future()
            decoding[request_id] = asyncio.Event()

            def handle(output) -> None:
                if len(output.generated_tokens) >= 2:  # its prefill step and a decode step are done
                    decoding[request_id].set()
                if output.status == RequestStatus.FINISHED:
                    done[request_id].set_result(output)

            manager.register_result_handler(request_id, handle)
            manager.add_request(tiny.tokenizer(f"request {request_id}")["input_ids"], request_id=request_id,
                                max_new_tokens=new_tokens, streaming=True)

        for i in range(4):
            submit(f"old-{i}", 40)
        # the step right after a prefill-only step runs FIFO by design (no two in a row), so "new" arrives
        # once the old requests decode, not between their prefill step and the next (a race under load)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in decoding.values())), 30)
        submit("new", 8)
        outputs = await asyncio.wait_for(asyncio.gather(*done.values()), 60)
    finally:
        manager.stop(block=True, timeout=10)

    assert [len(o.generated_tokens) for o in outputs] == [40, 40, 40, 40, 8], "every request ran to its length"
    joined = next(i for i, step in enumerate(steps) if "new" in step)
    assert steps[joined] == ["new"], f"the new request's prefill ran alone, not with the decodes: {steps[joined]}"
    assert {f"old-{i}" for i in range(4)} <= set(steps[joined + 1]), "the decodes resumed at the next step"
