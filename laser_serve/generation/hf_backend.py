"""transformers backend: `model.generate` on the shared torch thread (comparison and fallback)."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

from laser_serve.devices import pick, torch_executor
from laser_serve.generation.base import Candidate, Prompt, Sampling
from laser_serve.models import causal_lm


class HfGenerator:
    name = "hf"

    def __init__(self, model: str, max_model_len: int, device: str = "auto") -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.device = pick(device)
        self._lm: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_loaded(
        cls, model: str, lm: Any, tokenizer: Any, max_model_len: int, device: str = "auto"
    ) -> HfGenerator:
        """Wrap an already-loaded (model, tokenizer) pair, e.g. a policy being trained (whose
        weights must not be the shared `causal_lm` copy); no `start()` needed."""
        generator = cls(model, max_model_len, device)
        generator._lm, generator._tokenizer = lm, tokenizer
        return generator

    async def start(self) -> None:
        if self._lm is not None:  # built by from_loaded
            return
        loop = asyncio.get_running_loop()
        self._lm, self._tokenizer = await loop.run_in_executor(
            torch_executor(), causal_lm, self.model, self.device
        )

    def generate_blocking(
        self, prompts: list[Prompt], sampling: Sampling, logprobs: bool = True
    ) -> list[list[Candidate]]:
        """`sampling.n` candidates for each prompt from one batched `generate` call (left
        padding). Blocking: call on the torch thread. `logprobs=False` skips mean_logprob,
        whose per-step logits dominate memory for long greedy batches."""
        return self._generate_batch(prompts, sampling, threading.Event(), logprobs)

    async def generate(
        self, prompt: Prompt, sampling: Sampling, request_id: str
    ) -> list[Candidate]:
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(torch_executor(), self._generate, prompt, sampling, cancelled)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()  # the stopping criterion ends generate() at the next token
            raise

    def _generate(
        self, prompt: Prompt, sampling: Sampling, cancelled: threading.Event
    ) -> list[Candidate]:
        return self._generate_batch([prompt], sampling, cancelled)[0]

    def _generate_batch(
        self,
        prompts: list[Prompt],
        sampling: Sampling,
        cancelled: threading.Event,
        logprobs: bool = True,
    ) -> list[list[Candidate]]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        if cancelled.is_set() or not prompts:
            return [[] for _ in prompts]
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        tok = self._tokenizer
        # Left padding: every prompt ends where decoding starts.
        batch = tok.pad(
            {"input_ids": [list(p.token_ids) for p in prompts]},
            padding_side="left",
            return_tensors="pt",
        )
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        width = input_ids.shape[1]
        greedy = sampling.temperature == 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            num_return_sequences=sampling.n,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=logprobs,
            stopping_criteria=StoppingCriteriaList([StopWhenCancelled()]),
        )
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tok)
        with torch.inference_mode():
            out = self._lm.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                **kwargs,
            )
        new = out.sequences[:, width:]
        token_lp = None
        if logprobs:
            lp = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # raw model log-probs
            token_lp = lp.gather(-1, new.unsqueeze(-1)).squeeze(-1).tolist()
        eos = set(_as_list(self._lm.generation_config.eos_token_id)) | {tok.eos_token_id}
        candidates = []
        for r, row in enumerate(new.tolist()):  # rows: prompt 0's n samples, then prompt 1's
            length = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            hit_eos = length <= len(row) and row[length - 1] in eos
            text = tok.decode(row[:length], skip_special_tokens=True)
            stopped = hit_eos or any(s in text for s in sampling.stop)
            for s in sampling.stop:  # vLLM convention: the stop string is not returned
                if s in text:
                    text = text[: text.index(s)]
            candidates.append(
                Candidate(
                    text=text,
                    token_count=length,  # EOS included, as vLLM counts
                    finish_reason="stop" if stopped else "length",
                    mean_logprob=sum(token_lp[r][:length]) / length
                    if token_lp is not None and length
                    else math.nan,
                    extra={"token_ids": row[:length]},  # what was sampled (training scores it)
                )
            )
        n = sampling.n
        return [candidates[i * n : (i + 1) * n] for i in range(len(prompts))]

    def healthy(self) -> bool:
        return self._lm is not None

    async def close(self) -> None:
        pass


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
