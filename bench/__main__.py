"""`python -m bench`: every benchmark, one after another (each prints its own table).

    python -m bench                 # all
    python -m bench operator        # some: operator, decision_loop, inference, backtest, forecaster, predictability,
                                    # activator, balance, scale_to_zero, scale_down, one_day, schedules,
                                    # policy_trials, prefix_cache, prefix_routing, outlier
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = ("operator", "decision_loop", "inference", "backtest", "forecaster", "predictability", "activator", "balance",
          "scale_to_zero", "scale_down", "one_day", "schedules", "policy_trials", "prefix_cache",
          "prefix_routing", "outlier")


def main(argv: list[str]) -> int:
    """Run the benchmarks ``argv`` names (all without a name), each at its defaults; exit status 2 (argparse's)
    for a name that is none of them."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the benchmarks named (default: all), one after another, each at "
        "its defaults; each prints its own table.",
        epilog="Each one also runs alone with its own flags: python -m bench.NAME --help. Run from the repository "
        "root (PYTHONPATH=.).")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"a benchmark: {', '.join(SUITES)}")
    chosen = parser.parse_args(argv).names or list(SUITES)
    unknown = set(chosen) - set(SUITES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}")
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        status = importlib.import_module(f"bench.{name}").main([])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
