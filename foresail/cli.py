"""The `foresail` command: one subcommand per job.

Each subcommand lives in the module that owns the job and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules keep heavy imports
(torch, transformers, kopf) inside ``run`` so that ``foresail --help`` stays fast and the
operator never imports torch; only the module of the command given is imported, so that one
command does not carry what another's module imports (numpy, pandas, scikit-learn).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("foresail_operator.cli", "run the Kubernetes operator (kopf)"),
    "activator": ("foresail_operator.activator_cli", "hold requests for deployments at zero until a replica is ready"),
    "serve": ("foresail_inference.cli", "run the OpenAI-compatible inference server"),
    "backtest": ("foresail.backtest.cli", "replay a trace against Foresail and the anchor autoscalers"),
    "forecast": ("foresail.backtest.forecast_cli", "measure forecast accuracy on a trace"),
    "schedules": ("foresail.backtest.schedules_cli", "find jobs that recur by the clock in a trace, as schedules"),
    "history": ("foresail_operator.history_cli", "write an LLMDeployment's demand from Prometheus as a trace"),
    "demo": ("foresail.demo.cli", "run the whole system locally on an embedded trace"),
    "dev": ("foresail.kubetest.cli", "developer tools (the Kubernetes API test server)"),
}
# the modules of each extra of pyproject.toml (tests/test_cli_extras.py keeps the two equal), and the extras each
# command needs: the demo starts `foresail dev apiserver` and `foresail serve`
EXTRAS: dict[str, tuple[str, ...]] = {
    "inference": ("torch", "transformers", "accelerate", "gguf", "psutil"),
    "dev": ("celpy", "kubernetes_validate", "jsonpatch", "jsonpointer", "jsonschema"),
}
NEEDS: dict[str, tuple[str, ...]] = {"serve": ("inference",), "dev": ("dev",), "demo": ("dev", "inference")}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with every subcommand whose module is installed, and the flags of ``command`` (the
    only module imported)."""
    parser = argparse.ArgumentParser(prog="foresail", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            if importlib.util.find_spec(module_name) is None:
                continue
        except ModuleNotFoundError:  # its package is not installed
            continue
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(_run=module.run)
    return parser


def missing_extra(command: str) -> str | None:
    """What to install for ``command``, in one line, where an extra it needs is not installed; else None."""
    for extra in NEEDS.get(command, ()):
        missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
        if missing:
            return (f"foresail {command} needs the [{extra}] extra ({missing[0]} is not installed): "
                    f"pip install 'foresail[{extra}]'")
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `foresail` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    problem = missing_extra(args.command)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
