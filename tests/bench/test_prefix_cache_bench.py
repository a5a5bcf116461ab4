"""The prefix cache benchmark runs end to end on a small load against two real servers: the one with
`--prefix-cache` serves the repeated system prompts from its cache, the other serves none."""

from __future__ import annotations

import json
from pathlib import Path

from bench.prefix_cache import main, requests_for, system_prompts


def test_prompts_share_only_their_system_prompts() -> None:
    systems = system_prompts(3, 20)
    assert len(set(systems)) == 3 and all(len(s.split()) == 20 + 3 for s in systems)
    first, second = requests_for(systems, 12, 0), requests_for(systems, 12, 1)
    assert all(any(p.startswith(s + "\n") for s in systems) for p in first + second)
    assert len(set(first) | set(second)) == 24, "every question is asked once"


def test_a_small_run_reports_both_servers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "prefix.json"
    assert main(["--concurrency", "2", "--requests", "8", "--system-prompts", "2", "--system-words", "60",
                 "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    # 8 requests over 2 system prompts: all but the first of each find its whole pages in the cache
    assert 0.3 < figures["hit_rate"]["prefix-cache"] < 0.9
    assert figures["hit_rate"]["no-cache"] == 0
    assert 60 < figures["mean_prompt_tokens"] < 2000  # each prompt holds its system prompt's 60 words
    for server in ("prefix-cache", "no-cache"):
        run = figures["results"][server]["2"]
        assert run["median_ttft_s"] > 0 and run["tokens_per_s"] > 0
    assert "prefix cache hits" in capsys.readouterr().out
