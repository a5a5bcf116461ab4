"""One adapter per inference engine: image, command line, port, probes and metric names.

Adding an engine touches this file only. The metric names map each engine onto Foresail's canonical
signals, so the autoscaler reads every runtime the same way (see metrics.py for the queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from foresail_operator.spec import LLMDeploymentSpec

PORT = 8000
MODEL_DIR = "/model-source"
CACHE_DIR = "/models-cache"


@dataclass(frozen=True)
class Runtime:
    """How to run one engine in a pod and read its metrics."""

    name: str
    image: str
    health_path: str
    ready_path: str
    # canonical signal -> the engine's Prometheus metric name (None: the engine has no such metric)
    metrics: dict[str, str | None] = field(default_factory=dict)
    non_root: bool = False
    # how long the engine's health check may take: SGLang's sends a one-token request and answers after 1 s at the
    # soonest (the kubelet's default probe timeout is 1 s)
    health_timeout_s: int = 1

    def command(self, spec: LLMDeploymentSpec, model: str, served_name: str) -> list[str]:
        """The container's command line: the engine's flags, less those that the spec's args set (TGI's launcher
        refuses a flag given twice; the others take the last), then the spec's args."""
        gpus = str(max(1, spec.resources.gpus))
        if self.name == "foresail":
            head = ["foresail", "serve"]
            flags = [("--model", model), ("--served-model-name", served_name), ("--host", ""),  # "": IPv4 and IPv6
                     ("--port", str(PORT)), ("--cache-dir", f"{CACHE_DIR}/hf"),
                     ("--drain-timeout", str(spec.runtime.drain_s))]
        elif self.name == "vllm":
            head = ["vllm", "serve", model]
            flags = [("--served-model-name", served_name), ("--host", "0.0.0.0"), ("--port", str(PORT)),
                     ("--tensor-parallel-size", gpus)]
        elif self.name == "tgi":
            head = ["text-generation-launcher"]
            flags = [("--model-id", model), ("--hostname", "0.0.0.0"), ("--port", str(PORT)), ("--num-shard", gpus)]
        elif self.name == "sglang":
            # --tp-size: SGLang has no --tp (argparse took it as an abbreviation while no other flag began so)
            head = ["python3", "-m", "sglang.launch_server", "--enable-metrics"]
            flags = [("--model-path", model), ("--served-model-name", served_name), ("--host", "0.0.0.0"),
                     ("--port", str(PORT)), ("--tp-size", gpus)]
        else:  # pragma: no cover - RUNTIMES and this table are kept in step by a test
            raise ValueError(f"unknown runtime {self.name}")
        flags += [("--revision", spec.model.revision)] if spec.model.revision else []
        given = {arg.split("=", 1)[0] for arg in spec.runtime.args}
        return head + [part for flag, value in flags if flag not in given for part in (flag, value)] \
            + list(spec.runtime.args)


_VLLM_METRICS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
    "kv_cache": "vllm:kv_cache_usage_perc",
    "ttft": "vllm:time_to_first_token_seconds",
}

RUNTIMES: dict[str, Runtime] = {
    "foresail": Runtime("foresail", "ghcr.io/foresail-dev/foresail-inference:0.1.0", "/health", "/ready",
                        dict(_VLLM_METRICS), non_root=True),
    "vllm": Runtime("vllm", "vllm/vllm-openai:v0.11.0", "/health", "/health", dict(_VLLM_METRICS)),
    "tgi": Runtime("tgi", "ghcr.io/huggingface/text-generation-inference:3.3.4", "/health", "/health", {
        "requests": "tgi_request_success",
        "prompt_tokens": "tgi_request_input_length_sum",  # the sums of its per-request token histograms
        "generation_tokens": "tgi_request_generated_tokens_sum",
        "running": "tgi_batch_current_size",
        "waiting": "tgi_queue_size",
        "kv_cache": None,
        "ttft": None,
    }),
    "sglang": Runtime("sglang", "lmsysorg/sglang:v0.5.2-cu126", "/health", "/health", health_timeout_s=3, metrics={
        "requests": "sglang:num_requests_total",
        "prompt_tokens": "sglang:prompt_tokens_total",
        "generation_tokens": "sglang:generation_tokens_total",
        "running": "sglang:num_running_reqs",
        "waiting": "sglang:num_queue_reqs",
        "kv_cache": "sglang:token_usage",
        "ttft": "sglang:time_to_first_token_seconds",
    }),
}


def runtime_for(spec: LLMDeploymentSpec, image_overrides: dict[str, str] | None = None) -> Runtime:
    """The runtime adapter of a spec, with the operator's configured default image if any."""
    runtime = RUNTIMES[spec.runtime.name]
    image = spec.runtime.image or (image_overrides or {}).get(runtime.name) or runtime.image
    if image == runtime.image:
        return runtime
    return replace(runtime, image=image)
