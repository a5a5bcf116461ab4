"""An API outage of any length leaves the operator running: kopf's retries of a failed request never run out."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import kopf

from foresail_operator import handlers


def test_the_api_backoff_never_runs_out() -> None:
    """kopf retries a failed API request for as long as the outage lasts: a finite list of waits ends in the
    operator exiting (1) once an outage outlasts it. Each request starts the waits afresh."""
    settings = kopf.OperatorSettings()
    asyncio.run(handlers.configure(settings=settings))
    backoffs = settings.networking.error_backoffs
    assert isinstance(backoffs, Iterable)
    for _ in range(2):
        assert list(itertools.islice(backoffs, 100)) == [1, 2, 5, 10] + [30] * 96
