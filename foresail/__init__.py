"""Foresail: run LLM inference servers on Kubernetes and scale them ahead of demand."""

__version__ = "0.1.0"
