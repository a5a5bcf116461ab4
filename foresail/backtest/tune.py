"""``--match-slo``: each baseline's cheapest single setting that reaches an SLO attainment on every trace.

The knob (target utilisation, or the static quantile) is searched on its grid, cheapest first. For each
trace a binary search (attainment grows as the setting gets more conservative) finds the cheapest
setting that reaches the target there; the fleet-wide setting is the most conservative of those, and it
is re-run on every trace (stepping further along the grid if some trace still misses). Where even the
most conservative setting misses the target on a trace, that trace asks only for what it can reach.
"""

from __future__ import annotations

from collections.abc import Callable

from foresail.backtest.baselines import POLICIES
from foresail.backtest.experiment import Prepared, run_policy
from foresail.backtest.simulate import SimResult


def match_slo(
    name: str, traces: list[Prepared], target: float, on_run: Callable[[], None] | None = None
) -> tuple[float | None, dict[str, SimResult]]:
    """The fleet-wide knob value for policy ``name`` and its result per trace."""
    spec = POLICIES[name]
    if not spec.grid:
        return None, {p.name: run_policy(p, name) for p in traces}
    grid = spec.grid
    cache: dict[tuple[int, int], SimResult] = {}

    def run(t: int, i: int) -> SimResult:
        if (t, i) not in cache:
            cache[(t, i)] = run_policy(traces[t], name, grid[i])
            if on_run:
                on_run()
        return cache[(t, i)]

    last = len(grid) - 1
    need: list[float] = []
    best: list[int] = []
    for t in range(len(traces)):
        reachable = min(target, run(t, last).slo_attainment)
        need.append(reachable)
        lo, hi = 0, last  # invariant: grid[hi] reaches it
        while lo < hi:
            mid = (lo + hi) // 2
            if run(t, mid).slo_attainment >= reachable - 1e-12:
                hi = mid
            else:
                lo = mid + 1
        best.append(hi)
    i = max(best) if best else last
    while i < last and any(run(t, i).slo_attainment < need[t] - 1e-12 for t in range(len(traces))):
        i += 1
    return grid[i], {traces[t].name: run(t, i) for t in range(len(traces))}


def fleet_setting(attainment: list[list[float]], target: float) -> int:
    """Index of the cheapest grid setting that reaches ``target`` on every trace, from a full grid scan.

    ``attainment[t][i]`` is trace ``t`` at grid setting ``i`` (cheapest first); a trace that cannot reach
    the target at any setting asks for its best attainment.
    """
    if not attainment:
        raise ValueError("no traces")
    need = [min(target, max(row)) for row in attainment]
    for i in range(len(attainment[0])):
        if all(row[i] >= need[t] - 1e-12 for t, row in enumerate(attainment)):
            return i
    return len(attainment[0]) - 1
