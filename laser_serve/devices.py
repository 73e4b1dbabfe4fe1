"""Device choice: CUDA when present, otherwise CPU."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick(device: str) -> str:
    """Resolve a configured device ("auto", "cpu", "cuda", "cuda:1")."""
    return default_device() if device == "auto" else device


@functools.cache
def torch_executor() -> ThreadPoolExecutor:
    """One worker thread runs every in-process torch call (RMs, encoders, hf generation).

    Serializing keeps CPU threads from oversubscribing the cores and makes seeded sampling
    deterministic; vLLM batches concurrent generation in its own engine process.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
