"""Foresail with one shipped default changed, over the benchmark's traces, and where its cost goes.

    PYTHONPATH=. python -m bench.policy_trials [scale_down_stabilization_s=300,600] [--cold-starts 120,300]

For each trace group of ``bench.backtest.load_groups`` (the ``--customers`` largest customers of each
ServeGen service, the aggregates, Azure, Mooncake), cold start and value, Foresail on its shipped defaults
with that one ``PolicyConfig`` field replaced, against the oracle: the lowest and mean SLO attainment, the
series at 99 % and the geometric mean of the cost ratios (the trials in docs/backtest.md); without a
field, the shipped defaults. Then the replica-hours above the oracle's, split by the term of the policy that
set each decision's count, as a share of the oracle's replica-hours.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import TRACES
from bench.backtest import TARGET, load_groups
from bench.table import cold_starts, print_table
from foresail.autoscaler.policy import Decision, ForesailPolicy, Observation, PolicyConfig
from foresail.backtest.baselines import foresail_config
from foresail.backtest.experiment import Prepared, prepare, run_instance, run_policy
from foresail.backtest.report import geomean
from foresail.backtest.simulate import SimResult
from foresail.backtest.traces import TraceError

# the term named first in a decision's reason (after "scale up 2→4: "), in the order the policy writes them
TERMS = (("holding the peak demand", "burst memory"), ("forecast", "forecast"), ("current demand", "reactive floor"),
         ("SLO governor", "SLO governor"))
COST_COLUMNS = ("forecast", "burst memory", "reactive floor", "stabilisation window", "SLO governor", "other")


class Recorded(ForesailPolicy):
    """Foresail that keeps the reason of each decision."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        self.reasons: list[str] = []

    def decide(self, obs: Observation) -> Decision:
        d = super().decide(obs)
        self.reasons.append(d.reason)
        return d


def term(reason: str) -> str:
    """The policy's term that set a decision's count, read from its reason."""
    if "scale-down limited" in reason:
        return "stabilisation window"
    why = reason.partition(": ")[2]
    return next((name for start, name in TERMS if why.startswith(start)), "other")


def run_foresail(p: Prepared, **changes: object) -> tuple[SimResult, list[str]]:
    """Foresail on its shipped defaults with ``changes`` over one prepared trace, and its reasons."""
    policy = Recorded(replace(foresail_config(p.sim), **changes))  # type: ignore[arg-type]
    return run_instance(p, policy, "foresail"), policy.reasons


def excess_by_term(res: SimResult, oracle: SimResult, reasons: list[str]) -> dict[str, float]:
    """Replica-steps above the oracle's, by the term that set the count."""
    out = dict.fromkeys(COST_COLUMNS, 0.0)
    for over, reason in zip(np.maximum(res.provisioned - oracle.provisioned, 0), reasons, strict=True):
        out[term(reason)] += float(over)
    return out


def parse_trial(text: str) -> tuple[str, list[object]]:
    """``field=v1,v2`` into the field and its values, typed as the field's default."""
    name, _, values = text.partition("=")
    defaults = {f.name: f.default for f in fields(PolicyConfig)}
    numeric = [k for k, v in defaults.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if name not in numeric or not values:
        raise ValueError(f"{text!r} is not FIELD=V1,V2 with a numeric PolicyConfig field: {', '.join(numeric)}")
    cast = float if isinstance(defaults[name], float) else int
    return name, [cast(v) for v in values.split(",")]


def trial(preps: list[Prepared], oracles: list[SimResult], label: str,
          **changes: object) -> dict[str, str]:
    """One group with ``changes``: its figures, and its replica-hours above the oracle's by term."""
    slo, ratio, split = [], [], dict.fromkeys(COST_COLUMNS, 0.0)
    for p, o in zip(tqdm(preps, desc=label, leave=False), oracles, strict=True):
        res, reasons = run_foresail(p, **changes)
        slo.append(res.slo_attainment)
        ratio.append(res.replica_hours / o.replica_hours)
        for t, over in excess_by_term(res, o, reasons).items():
            split[t] += over
    oracle_steps = sum(float(o.provisioned.sum()) for o in oracles)
    row = {"min": f"{100 * min(slo):.2f}", "mean": f"{100 * np.mean(slo):.2f}",
           "at": f"{sum(s >= TARGET for s in slo)}/{len(slo)}", "cost": f"x{geomean(ratio):.3f}",
           "all": f"{sum(split.values()) / oracle_steps:.3f}"}
    return row | {t: f"{split[t] / oracle_steps:.3f}" for t in COST_COLUMNS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trial", nargs="?", help="FIELD=V1,V2: a PolicyConfig field and its values to try")
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--customers", type=int, default=3, help="largest customers per ServeGen service")
    ap.add_argument("--cold-starts", type=cold_starts, default="120", help="cold starts in seconds (default 120)")
    args = ap.parse_args(argv)
    try:
        name, values = parse_trial(args.trial) if args.trial else ("", [None])  # None: shipped
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    try:
        groups = load_groups(args.traces, args.customers)
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    rows = []
    for cold in args.cold_starts:
        preps = {g: [prepare(t, cold_start_s=cold) for t in ts] for g, ts in groups.items()}
        oracle = {g: [run_policy(p, "oracle") for p in ps] for g, ps in preps.items()}
        for value in values:
            setting = f"{name}={value}" if name else "shipped"
            changes = {name: value} if name else {}
            for g, ps in preps.items():
                row = trial(ps, oracle[g], f"{g} {cold:g} s {setting}", **changes)
                rows.append({"cold": f"{cold:g} s", "value": setting, "group": g} | row)
    head = {"cold": "cold start", "value": "setting", "group": "group"}
    print_table(rows, head | {"min": "SLO min %", "mean": "mean %", "at": "at 99 %", "cost": "cost"})
    print("\nreplica-hours above the oracle's, as a share of the oracle's, by the term that set the count:")
    print_table(rows, head | {"all": "all"} | {t: t for t in COST_COLUMNS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
