"""Backtest output: the terminal table, the JSON summary, the per-step timeline CSV and the plot."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from foresail.backtest.experiment import Prepared
from foresail.backtest.simulate import SimResult

Results = dict[str, dict[str, SimResult]]  # trace name -> policy name -> result


def geomean(values: list[float]) -> float:
    """Geometric mean of the positive finite values (NaN if none)."""
    v = [x for x in values if x > 0 and math.isfinite(x)]
    return float(math.exp(sum(math.log(x) for x in v) / len(v))) if v else math.nan


def summarise(results: Results, settings: dict | None = None) -> dict:
    """Per trace and policy: SLO attainment, replica-hours, cost relative to the oracle, scale events."""
    traces: dict[str, dict] = {}
    policies: list[str] = []
    for trace, by_policy in results.items():
        oracle = by_policy.get("oracle")
        oh = oracle.replica_hours if oracle else None
        traces[trace] = {}
        for name, res in by_policy.items():
            row = res.summary(oh)
            row["setting"] = res.extra.get("knob")
            traces[trace][name] = row
            if name not in policies:
                policies.append(name)
    overall = {}
    for name in policies:
        rows = [t[name] for t in traces.values() if name in t]
        overall[name] = {
            "geomean_cost_vs_oracle": geomean([r.get("cost_vs_oracle", math.nan) for r in rows]),
            "min_slo_attainment": min(r["slo_attainment"] for r in rows),
            "mean_slo_attainment": float(np.mean([r["slo_attainment"] for r in rows])),
            "traces_at_or_above_99": sum(r["slo_attainment"] >= 0.99 for r in rows),
            "replica_hours": float(sum(r["replica_hours"] for r in rows)),
        }
    return {"settings": settings or {}, "overall": overall, "traces": traces}


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def table(summary: dict) -> str:
    """Plain-text table: one block per trace, then the overall line per policy."""
    lines = []
    head = f"{'policy':<13}{'SLO att.':>9}{'rep-hours':>11}{'x oracle':>9}{'events':>8}{'setting':>9}"
    for trace, rows in summary["traces"].items():
        lines.append(f"== {trace}")
        lines.append(head)
        for name, r in rows.items():
            lines.append(
                f"{name:<13}{_fmt(100 * r['slo_attainment'], '8.2f')}%{_fmt(r['replica_hours'], '11.1f')}"
                f"{_fmt(r.get('cost_vs_oracle'), '9.3f')}{r['scale_events']:>8}{_fmt(r.get('setting'), '.3g'):>9}"
            )
    if len(summary["traces"]) > 1:
        lines.append(f"== all {len(summary['traces'])} traces")
        lines.append(f"{'policy':<13}{'min SLO':>9}{'mean SLO':>9}{'>=99%':>7}{'geo x oracle':>13}")
        n = len(summary["traces"])
        for name, r in summary["overall"].items():
            lines.append(
                f"{name:<13}{_fmt(100 * r['min_slo_attainment'], '8.2f')}%"
                f"{_fmt(100 * r['mean_slo_attainment'], '8.2f')}%"
                f"{r['traces_at_or_above_99']:>4}/{n:<2}{_fmt(r['geomean_cost_vs_oracle'], '13.3f')}"
            )
    return "\n".join(lines)


def write_json(path: str | Path, data: dict) -> None:
    """``data`` (a backtest's summary, a forecast's scores) as JSON, NaN and infinities written as null."""

    def clean(o: object) -> object:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    write_text(path, json.dumps(clean(data), indent=2))


def write_text(path: str | Path, text: str) -> None:
    """``text`` to the file ``path``, all or nothing (``write_file``)."""
    write_file(path, lambda to: to.write_text(text))


def written(flag: str, path: str | Path, write: Callable[[], object]) -> bool:
    """Whether ``write`` wrote the file ``path`` that ``flag`` names; where it failed (OSError), an error on
    stderr says why."""
    try:
        write()
    except OSError as exc:
        print(f"error: {flag} {path}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return False
    return True


def write_file(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` by calling ``write`` with the path to write to, all or nothing: a new or regular file by way of
    a partial file beside it, moved into place once whole, so a failed write leaves no half-written file and the
    old one as it was; anything else (a link, /dev/stdout) in place. OSError says why a write failed."""
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        write(target)
        return
    partial = target.with_name(f".{target.name[:200]}.partial")  # a name the folder takes if it takes the target's
    try:
        write(partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def write_timeline(path: str | Path, prepared: list[Prepared], results: Results) -> None:
    """One row per step and policy: ``policy,time_s,arrivals,provisioned_replicas,ready_replicas``.

    With several traces a leading ``trace`` column says which.
    """
    write_file(path, lambda to: _write_timeline(to, prepared, results))


def _write_timeline(path: Path, prepared: list[Prepared], results: Results) -> None:
    many = len(prepared) > 1
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        columns = ["policy", "time_s", "arrivals", "provisioned_replicas", "ready_replicas"]
        w.writerow((["trace"] if many else []) + columns)
        for p in prepared:
            # to the microsecond, whole seconds without a point; arrivals to 10 digits, past the resampling's noise
            t = [f"{x:.6f}".rstrip("0").rstrip(".") for x in p.start_s + np.arange(len(p.arrivals)) * p.sim.interval_s]
            arrivals = [f"{x:.10g}" for x in p.arrivals]
            for name, res in results[p.name].items():
                for k in range(len(t)):
                    w.writerow(([p.name] if many else []) + [
                        name, t[k], arrivals[k], int(res.provisioned[k]), int(res.ready[k])])


def plot(
    path: str | Path, p: Prepared, results: dict[str, SimResult], hours: tuple[float, float] | None = None
) -> None:
    """Demand, Foresail's forecast and replicas over time, one panel per policy (demand in replicas' worth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt = p.sim.interval_s
    t_h = np.arange(len(p.arrivals)) * dt / 3600.0
    sel = np.ones(len(t_h), bool) if hours is None else (t_h >= hours[0]) & (t_h < hours[1])
    need = p.arrivals / (p.sim.capacity * dt)
    names = list(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.9 * len(names) + 0.8), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        res = results[name]
        ax.fill_between(t_h[sel], need[sel], step="post", color="0.85", label="demand (replicas' worth)")
        ax.step(t_h[sel], res.provisioned[sel], where="post", color="tab:blue", lw=1.0, label="provisioned")
        ax.step(t_h[sel], res.ready[sel], where="post", color="tab:green", lw=0.8, label="ready")
        if res.forecast_upper is not None and np.isfinite(res.forecast_upper[sel]).any():
            ax.plot(t_h[sel], res.forecast_upper[sel] / p.sim.capacity, color="tab:orange", lw=0.8,
                    label="forecast p90 (next cold start)")
        missed = sel & ~res.met & (p.arrivals > 0)
        if missed.any():
            ax.plot(t_h[missed], np.zeros(missed.sum()), "|", color="tab:red", ms=8, label="SLO missed")
        ax.set_ylabel("replicas")
        ax.set_title(f"{name}: SLO {100 * res.slo_attainment:.2f}%, {res.replica_hours:.0f} replica-hours",
                     loc="left", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("hours from the start of the trace")
    sim = p.sim
    fig.suptitle(f"{p.name}: cold start {sim.cold_start_s:.0f} s, capacity {sim.capacity:.3g} {sim.unit} per replica",
                 fontsize=10)
    fig.tight_layout()
    try:  # the format from the name given: the partial file's name ends in .partial
        write_file(path, lambda to: fig.savefig(to, dpi=110, format=Path(path).suffix.lstrip(".").lower() or None))
    finally:
        plt.close(fig)
