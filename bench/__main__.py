"""`python -m bench`: every benchmark, one after another (each prints its own table).

    python -m bench                 # all
    python -m bench operator        # some: operator, decision_loop, inference, backtest, forecaster, predictability,
                                    # activator, balance, scale_to_zero, scale_down, one_day, schedules,
                                    # policy_trials, prefix_cache, prefix_routing, outlier
"""

from __future__ import annotations

import importlib
import sys

SUITES = ("operator", "decision_loop", "inference", "backtest", "forecaster", "predictability", "activator", "balance",
          "scale_to_zero", "scale_down", "one_day", "schedules", "policy_trials", "prefix_cache",
          "prefix_routing", "outlier")


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = set(chosen) - set(SUITES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}")
        return 2
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        status = importlib.import_module(f"bench.{name}").main([])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
