"""Candidate generation: the Generator protocol and its vLLM and transformers backends."""

from __future__ import annotations

from laser_serve.config import GeneratorConfig
from laser_serve.generation.base import (
    MIN_PROMPT_TOKENS,
    Candidate,
    Generator,
    Prompt,
    PromptBuilder,
    PromptError,
    Sampling,
    truncate_middle,
)

__all__ = [
    "MIN_PROMPT_TOKENS",
    "Candidate",
    "Generator",
    "Prompt",
    "PromptBuilder",
    "PromptError",
    "Sampling",
    "make_generator",
    "truncate_middle",
]


def make_generator(config: GeneratorConfig) -> Generator:
    if config.backend == "vllm":
        from laser_serve.generation.vllm_backend import VllmGenerator

        return VllmGenerator(
            config.model,
            config.max_model_len,
            dtype=config.dtype,
            gpu_memory_utilization=config.gpu_memory_utilization,
            kv_cache_gib=config.kv_cache_gib,
            enforce_eager=config.enforce_eager,
            enable_prefix_caching=config.enable_prefix_caching,
        )
    from laser_serve.generation.hf_backend import HfGenerator

    return HfGenerator(config.model, config.max_model_len)
