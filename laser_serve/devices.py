"""Device and dtype choice: CUDA when present, otherwise CPU; bf16 where the hardware has it."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


@functools.cache
def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick(device: str) -> str:
    """Resolve a configured device ("auto", "cpu", "cuda", "cuda:1")."""
    return default_device() if device == "auto" else device


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), ":")
    return frozenset(line.split(":", 1)[1].split())


def pick_dtype(dtype: str, device: str) -> str:
    """Resolve a configured dtype: "auto" is bfloat16 on a GPU and on a CPU that computes
    bf16 in hardware (AVX512_BF16 or AMX-BF16: a 1,000-token prefill of the 0.5B runs 3.6×
    faster than in fp32 on such a 2-core Xeon), float32 on other CPUs, where bf16 is slower
    than fp32."""
    if dtype != "auto":
        return dtype
    if not device.startswith("cpu") or {"avx512_bf16", "amx_bf16"} & cpu_flags():
        return "bfloat16"
    return "float32"


@functools.cache
def torch_executor() -> ThreadPoolExecutor:
    """One worker thread runs every in-process torch call (RMs, encoders, hf generation).

    Serializing keeps CPU threads from oversubscribing the cores and makes seeded sampling
    deterministic; vLLM batches concurrent generation in its own engine process.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
