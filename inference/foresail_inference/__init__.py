"""Foresail's OpenAI-compatible inference server (`foresail serve`).

``sources`` checks ``--model`` before torch is imported; ``models`` loads it (builtin tiny, folder,
Hugging Face id, GGUF); ``sampling`` adds per-request greedy/seed to transformers' processors;
``engine`` wraps transformers' ContinuousBatchingManager with admission control and cancellation;
``protocol`` parses OpenAI bodies and builds responses; ``api`` is the aiohttp app; ``metrics``
declares every exported metric; ``server`` runs the process's life; ``cli`` is the subcommand.
"""
