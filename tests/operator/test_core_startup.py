"""The operator's startup activity, as kopf runs it, where /metrics cannot listen."""

from __future__ import annotations

import asyncio
import socket

import kopf
import pytest
from kopf._core.actions import lifecycles
from kopf._core.engines import activities
from kopf._core.engines.indexing import OperatorIndexers
from kopf._core.intents import causes, registries

from foresail_operator import handlers  # noqa: F401  (registers the startup handlers)
from foresail_operator.config import OperatorConfig


async def test_a_metrics_port_taken_after_the_check_stops_the_startup_and_starts_no_collector() -> None:
    """A port taken between the command's check and the startup: kopf would retry the startup for ever (every
    60 s), the operator never ready and a collector started at each try; it fails for good instead."""
    dual = socket.has_dualstack_ipv6()
    with socket.socket(socket.AF_INET6 if dual else socket.AF_INET) as taken:
        taken.bind(("::" if dual else "0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        memo = kopf.Memo(config=OperatorConfig(metrics_port=port, prometheus_url="http://127.0.0.1:9"))
        settings = kopf.OperatorSettings()
        settings.execution.default_backoff = 0.1  # the retries, if any, come at once
        run = activities.run_activity(lifecycle=lifecycles.all_at_once, registry=registries.get_default_registry(),
                                      settings=settings, activity=causes.Activity.STARTUP,
                                      indices=OperatorIndexers().indices, memo=memo)
        with pytest.raises(activities.ActivityError) as failed:
            await asyncio.wait_for(run, timeout=10)
    assert isinstance(failed.value.__cause__, kopf.PermanentError)
    assert f"cannot serve /metrics on port {port}" in str(failed.value.__cause__)
    assert getattr(memo, "collector_task", None) is None
