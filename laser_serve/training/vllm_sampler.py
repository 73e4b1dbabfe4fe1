"""laser-train's vLLM sampling (`--generator vllm`): the server's generator, one AsyncLLM
engine with LoRA enabled, sampling under the adapter the policy has now.

The adapter changes after every optimizer step, so each change is published as a new peft
folder under a new adapter id (written next to its final name and renamed, so vLLM never
reads half a folder). vLLM keys its adapter cache and its prefix-cache blocks by that id
and name, so nothing computed under older weights is reused. The engine starts on first
use and serves every call on one event loop (asyncio.Runner keeps the engine's output task
alive between the synchronous training steps).

Reproducibility: each prompt's request gets its own seed, derived from the step's seed and
the prompt's index in the batch, and vLLM seeds the request's n samples seed, seed+1, ...
A seeded request draws its sampling noise from its own generator, so its samples do not
depend on which other requests share an engine step.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import numpy as np

from laser_serve.devices import default_device
from laser_serve.generation.base import Candidate, Prompt, Sampling
from laser_serve.generation.vllm_backend import LoraAdapter, VllmGenerator
from laser_serve.training.config import TrainConfig, training_dtype


class VllmSampler:
    def __init__(self, model: str, max_model_len: int, max_lora_rank: int, memory: float) -> None:
        self.generator = VllmGenerator(
            model,
            max_model_len,
            dtype=training_dtype(default_device()),
            gpu_memory_utilization=memory,
            max_lora_rank=max_lora_rank,
        )
        self._runner = asyncio.Runner()
        self._started = False
        self._folder = Path(tempfile.mkdtemp(prefix="laser-train-lora-"))
        self._ids = itertools.count(1)
        self._requests = itertools.count()

    @classmethod
    def for_config(cls, config: TrainConfig) -> VllmSampler:
        """An engine that fits `config`'s prompts, answers and LoRA rank."""
        return cls(config.model, config.max_model_len(), config.lora_r, config.vllm_memory)

    def publish(self, save: Callable[[Path], None]) -> LoraAdapter:
        """Save the current adapter (`save(folder)` writes a peft folder) under a new id."""
        adapter_id = next(self._ids)
        final = self._folder / f"adapter-{adapter_id}"
        tmp = self._folder / f".adapter-{adapter_id}.tmp"
        save(tmp)
        tmp.rename(final)
        for old in self._folder.glob("adapter-*"):  # vLLM holds older ones in memory, if at all
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return LoraAdapter(adapter_id, str(final))

    def sample(
        self, prompts: list[Prompt], sampling: Sampling, adapter: LoraAdapter
    ) -> list[list[Candidate]]:
        """`sampling.n` candidates per prompt, all prompts in flight at once."""
        self.start()
        return self._runner.run(self._sample(prompts, sampling, adapter))

    def start(self) -> None:
        """Start the engine now (else the first `sample` does)."""
        if not self._started:
            self._runner.run(self.generator.start())
            self._started = True

    async def _sample(
        self, prompts: list[Prompt], sampling: Sampling, adapter: LoraAdapter
    ) -> list[list[Candidate]]:
        calls = []
        for i, prompt in enumerate(prompts):
            seeded = replace(sampling, seed=prompt_seed(sampling.seed, i))
            request_id = f"train-{next(self._requests)}"
            calls.append(self.generator.generate(prompt, seeded, request_id, adapter))
        return list(await asyncio.gather(*calls))

    def close(self) -> None:
        if self._started:
            self._runner.run(self.generator.close())
        self._runner.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> VllmSampler:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def prompt_seed(step_seed: int | None, index: int) -> int | None:
    """The seed of the `index`-th prompt of a batch sampled with `step_seed` (None: unseeded)."""
    if step_seed is None:
        return None
    return int(np.random.SeedSequence([step_seed, index]).generate_state(1)[0])
