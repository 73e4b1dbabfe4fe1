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

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._lm, self._tokenizer = await loop.run_in_executor(
            torch_executor(), causal_lm, self.model, self.device
        )

    async def generate(self, prompt: Prompt, sampling: Sampling, request_id: str) -> list[Candidate]:
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
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        if cancelled.is_set():
            return []
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        tok = self._tokenizer
        input_ids = torch.tensor([prompt.token_ids], device=self.device)
        greedy = sampling.temperature == 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            num_return_sequences=sampling.n,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
            stopping_criteria=StoppingCriteriaList([StopWhenCancelled()]),
        )
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tok)
        with torch.inference_mode():
            out = self._lm.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
            )
        new = out.sequences[:, input_ids.shape[1] :]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # raw model log-probs
        token_lp = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        candidates = []
        eos = set(_as_list(self._lm.generation_config.eos_token_id)) | {tok.eos_token_id}
        for row, lps in zip(new.tolist(), token_lp.tolist(), strict=True):
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
                    mean_logprob=sum(lps[:length]) / length if length else math.nan,
                )
            )
        return candidates

    async def close(self) -> None:
        pass


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
