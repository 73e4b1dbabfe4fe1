"""The policy being trained: its own weights (LoRA or full), sampling, contexts, DPO step.

The weights are a fresh load, never the `causal_lm` cache entry: the lm-judge and lm-loglik
RMs score with that cached copy, which must stay the frozen base model. Sampling and
contexts reuse the serving code around this model: HfGenerator on the model itself, or
(`--generator vllm`) the server's vLLM generator with the current LoRA adapter
(training/vllm_sampler.py); PolicyContext for the contexts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser_serve.context import PolicyContext
from laser_serve.generation.base import Candidate, Prompt, PromptBuilder, Sampling
from laser_serve.generation.hf_backend import HfGenerator
from laser_serve.generation.vllm_backend import LoraAdapter
from laser_serve.models import causal_lm, load_causal_lm
from laser_serve.training.config import TrainConfig, training_dtype
from laser_serve.training.losses import dpo_nll_loss, token_logps
from laser_serve.training.vllm_sampler import VllmSampler


@dataclass
class Pair:
    prompt: Prompt
    chosen: list[int]  # sampled token ids
    rejected: list[int]


@dataclass
class StepLoss:
    loss: float
    dpo: float
    nll: float


class TrainablePolicy:
    def __init__(self, config: TrainConfig, device: str, vllm: VllmSampler | None = None) -> None:
        """`vllm`: sample with that engine under this policy's LoRA adapter (else with
        transformers on the policy itself)."""
        self.config = config
        self.device = device
        lm, tokenizer = load_causal_lm(config.model, device, training_dtype(device))
        if not config.full:
            from peft import LoraConfig, get_peft_model

            lm = get_peft_model(
                lm,
                LoraConfig(
                    r=config.lora_r,
                    lora_alpha=config.lora_alpha,
                    lora_dropout=config.lora_dropout,
                    target_modules=list(config.lora_targets),
                    bias="none",
                    task_type="CAUSAL_LM",
                ),
            )
        lm.eval()  # train mode (dropout) only inside the loss step
        self.lm, self.tokenizer = lm, tokenizer
        self.prompts = PromptBuilder(tokenizer, config.max_model_len())
        self.generator = HfGenerator.from_loaded(
            config.model, lm, tokenizer, config.max_model_len(), device
        )
        self.vllm = vllm
        self._adapter: LoraAdapter | None = None  # published for vLLM; None after any change
        self.context = PolicyContext(config.model, device, loaded=(lm, tokenizer))

    def parameters(self) -> list[Any]:
        return [p for p in self.lm.parameters() if p.requires_grad]

    def prompt(self, messages: list[dict[str, str]], max_new_tokens: int) -> Prompt:
        return self.prompts.build(None, messages, max_new_tokens)

    def contexts(self, prompts: list[Prompt]) -> np.ndarray:
        """(B, hidden) last-token hidden states of the current policy (the paper's context)."""
        return np.stack([self.context.encode(p.token_ids, p.text, "") for p in prompts])

    def sample(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Candidate]]:
        if self.vllm is None:
            return self.generator.generate_blocking(prompts, sampling, logprobs=False)
        if self._adapter is None:
            self._adapter = self.vllm.publish(self.save)
        return self.vllm.sample(prompts, sampling, self._adapter)

    @contextlib.contextmanager
    def reference(self) -> Iterator[Any]:
        """The frozen initial policy: LoRA with its adapters off, else the cached base."""
        if self.config.full:
            yield causal_lm(self.config.model, self.device, training_dtype(self.device))[0]
        else:
            with self.lm.disable_adapter():
                yield self.lm

    def preference_step(self, pairs: list[Pair], optimizer: Any) -> StepLoss:
        """One optimizer step on mean(DPO + λ·NLL) over `pairs`, accumulated over
        micro-batches of `micro_batch` sequences so memory stays bounded."""
        import torch

        cfg = self.config
        per_chunk = max(1, cfg.micro_batch // 2)
        totals = np.zeros(3)
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(pairs), per_chunk):
            chunk = pairs[start : start + per_chunk]
            ids, attention, loss_mask, first = self._pad(chunk)
            with torch.no_grad(), self.reference() as ref:
                ref.eval()
                ref_logps, _ = self._logps(ref, ids, attention, loss_mask, first)
            self.lm.train()
            try:
                logps, counts = self._logps(self.lm, ids, attention, loss_mask, first)
            finally:
                self.lm.eval()
            k = len(chunk)  # rows: chosen 0..k-1, then rejected 0..k-1
            loss, dpo, nll = dpo_nll_loss(
                logps[:k],
                logps[k:],
                ref_logps[:k],
                ref_logps[k:],
                counts[:k],
                cfg.beta,
                cfg.nll_weight,
            )
            (loss.sum() / len(pairs)).backward()
            totals += [loss.sum().item(), dpo.sum().item(), nll.sum().item()]
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), cfg.max_grad_norm)
        optimizer.step()
        self._adapter = None
        loss, dpo, nll = (totals / len(pairs)).tolist()
        return StepLoss(loss, dpo, nll)

    @staticmethod
    def _logps(model: Any, ids: Any, attention: Any, loss_mask: Any, first: int) -> Any:
        # Logits only from the first response-predicting position on: the LM head and the
        # vocabulary softmax over prompt positions would be most of the cost and memory.
        keep = ids.shape[1] - first
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep).logits
        return token_logps(logits, ids[:, first:], loss_mask[:, first:])

    def _pad(self, chunk: list[Pair]) -> tuple[Any, Any, Any, int]:
        """Right-padded prompt+response rows (all chosen, then all rejected), the mask of
        response tokens and the first position whose logits are needed."""
        import torch

        rows = [(p.prompt.token_ids, p.chosen) for p in chunk]
        rows += [(p.prompt.token_ids, p.rejected) for p in chunk]
        batch = self.tokenizer.pad(
            {"input_ids": [list(prompt) + list(response) for prompt, response in rows]},
            padding_side="right",
            return_tensors="pt",
        )
        ids, attention = batch["input_ids"], batch["attention_mask"]
        # The response tokens: past the prompt and not padding.
        starts = torch.tensor([len(prompt) for prompt, _ in rows])[:, None]
        loss_mask = attention * (torch.arange(ids.shape[1])[None, :] >= starts)
        first = min(len(p) for p, _ in rows) - 1  # the first position whose logits matter
        dev = self.device
        return ids.to(dev), attention.to(dev), loss_mask.to(dev), first

    # --- saving ---------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """LoRA: the adapter (PeftModel.from_pretrained loads it); full: the whole model."""
        self.lm.save_pretrained(folder)
        if self.config.full:
            self.tokenizer.save_pretrained(folder)
        (folder / "laser_train.json").write_text(
            json.dumps({"base_model": self.config.model, "full": self.config.full})
        )

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        if self.config.full:
            from transformers import AutoModelForCausalLM

            saved = AutoModelForCausalLM.from_pretrained(folder, dtype=self.lm.dtype)
            self.lm.load_state_dict(saved.state_dict())
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm, load_file(folder / "adapter_model.safetensors"))
        self._adapter = None
