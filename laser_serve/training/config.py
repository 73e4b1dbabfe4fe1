"""Every knob of `laser-train`, one named value each (nanoGPT style) with its help text; the
CLI's flags are built from these fields.

Defaults follow LASeR (arXiv 2410.01735) and its authors' code (LASeR-MAB) where they state
one: n=30 samples at temperature 0.8, P=10 pairs per prompt, batches of 16, β=0.1, NLL
weight 1, Adam at 5e-6, LoRA r=16/α=32 on q_proj,v_proj with dropout 0.1, LinUCB α=0.1 on
unnormalized last-token hidden states, quantile (20th/80th) reward normalization. The
authors train 10 iterations; one is the default here because a CPU iteration over GSM8K
takes days. Knobs the paper does not state are marked "ours".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from laser_serve.config import SelectorConfig
from laser_serve.models import SMOLLM2
from laser_serve.selector.factory import SPECS
from laser_serve.selector.normalizer import MODES as REWARD_NORMS

DATASETS = ("gsm8k", "jsonl", "strategyqa")
GROUPINGS = ("batch", "instance")
GENERATORS = ("hf", "vllm")


def knob(default: Any, help: str, choices: Sequence[str] = ()) -> Any:
    """A TrainConfig field with its --help text and allowed values: laser-train's flags and
    its checks are built from these."""
    meta = {"help": help, "choices": tuple(choices)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # --- data ---
    data: str = knob(
        "gsm8k", 'jsonl: rows {"prompt", "answer"}; strategyqa: yes/no answers', DATASETS
    )
    data_dir: str = knob("", "gsm8k: $LASER_GSM8K_DIR, else ../shared/data/gsm8k next to the repo")
    train_size: int = knob(0, "use the first N training examples after shuffling (0: all)")
    eval_size: int = knob(100, "held-out examples scored before and after each iteration (ours)")
    # --- policy model ---
    model: str = knob(SMOLLM2, "policy LM: builtin:*, a local folder or a cached HF id")
    full: bool = knob(
        False, "full fine-tuning instead of LoRA (reference: the frozen initial model)"
    )
    lora_r: int = knob(16, "LoRA rank")
    lora_alpha: int = knob(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = knob(0.1, "dropout on the LoRA input")
    lora_targets: list[str] = knob(["q_proj", "v_proj"], "modules LoRA adapts")
    max_prompt_tokens: int = knob(512, "longer prompts are cut in the middle (ours)")
    # --- sampling and pairs ---
    iterations: int = knob(1, "passes over the training prompts (the paper: 10)")
    batch_size: int = knob(16, "prompts per batch; one selector choice per batch (or per group)")
    n: int = knob(30, "sampled responses per prompt")
    pairs: int = knob(10, "preference pairs per prompt: best vs worst, then inward (≤ n/2)")
    temperature: float = knob(0.8, "sampling temperature of the n responses")
    top_p: float = knob(1.0, "nucleus sampling (1.0: off)")
    max_new_tokens: int = knob(150, "the authors' code samples 150 new tokens")
    generator: str = knob(
        "hf", "hf (transformers) | vllm (LoRA adapter reloaded per step; no --full)", GENERATORS
    )
    vllm_memory: float = knob(
        0.1, "vllm on a GPU: gpu_memory_utilization (on CPU the KV cache is 2 GiB)"
    )
    # --- loss and optimizer ---
    beta: float = knob(0.1, "DPO temperature")
    nll_weight: float = knob(1.0, "λ in L = DPO + λ·NLL(chosen)")
    lr: float = knob(5e-6, "AdamW learning rate (the authors' value, for full fine-tuning)")
    weight_decay: float = knob(0.0, "AdamW weight decay (0: Adam, as the authors' code)")
    max_grad_norm: float = knob(0.0, "0: no clipping (as the authors' code)")
    micro_batch: int = knob(
        8, "sequences per forward pass in the loss; gradients accumulate (ours)"
    )
    # --- selector ---
    policy: str = knob("linucb", f"the selector: {SPECS}")
    grouping: str = knob(
        "batch", "batch: one RM per batch; instance: one step per RM group (ours)", GROUPINGS
    )
    alpha: float = knob(0.1, "LinUCB exploration")
    lam: float = knob(1.0, "LinUCB ridge")
    normalize_context: bool = knob(False, "unit-normalize contexts (the paper does not)")
    reward_norm: str = knob("quantile", "how rewards are scaled before LinUCB", REWARD_NORMS)
    window: int = knob(1000, "rewards kept for the quantiles")
    warm_start: str = knob(
        "", "initialize the selector from a laser-serve state dir or pool files (a new run only)"
    )
    warm_start_rounds: float = knob(
        0.0, "the rounds the whole prior counts as (0: each event once)"
    )
    # --- reward models ---
    reward_models: list[str] = knob([], "pool subset by name (empty: all)")
    rm_config: str = knob("", "laser-serve TOML whose [[reward_models]] replace the default pool")
    verifier: bool = knob(False, "add the exact-match verifier RM (needs gold answers)")
    # --- evaluation ---
    eval_max_new_tokens: int = knob(256, "greedy tokens per held-out answer (ours)")
    eval_batch_size: int = knob(16, "held-out prompts per generate call")
    # --- run ---
    seed: int = knob(0, "data order, sampling, LoRA init and the selector's own randomness")
    out: str = knob("runs/laser-train", "run folder: log.jsonl, summary.json, checkpoints, adapter")
    resume: bool = knob(False, "continue the run in --out from its latest checkpoint")
    max_steps: int = knob(0, "stop after this many batches in total (0: run every iteration)")
    checkpoint_every: int = knob(1, "batches between checkpoints (the last batch always saves)")
    log_candidates: bool = knob(False, "also log every sampled response text (large)")
    device: str = knob("auto", "auto, cpu, cuda or cuda:N (the policy and RMs set to auto)")
    threads: int = knob(0, "torch CPU threads (0: torch's default)")
    progress: bool = knob(True, "tqdm progress bar")

    def max_model_len(self) -> int:
        """Tokens a prompt plus its sampled or evaluated answer may take."""
        return self.max_prompt_tokens + max(self.max_new_tokens, self.eval_max_new_tokens)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def selector(self) -> SelectorConfig:
        """The selector settings, for the factory the server uses too."""
        return SelectorConfig(
            policy=self.policy,
            alpha=self.alpha,
            lam=self.lam,
            normalize=self.normalize_context,
            reward_norm=self.reward_norm,
            window=self.window,
            seed=self.seed,
            warm_start=self.warm_start,
            warm_start_rounds=self.warm_start_rounds,
        )


# Fields that may differ between a run and its --resume: they do not change what a step does.
RESUMABLE_CHANGES = frozenset(
    {
        "resume",
        "max_steps",
        "checkpoint_every",
        "iterations",
        "progress",
        "threads",
        "out",
        "vllm_memory",
    }
)


def training_dtype(device: str) -> str:
    """fp32 on a CPU, even one with bf16 in hardware: DPO's log-prob differences and the
    optimizer's small updates need fp32's mantissa there (bf16 on a GPU). vLLM samples in
    the same dtype, so that its samples are the policy's."""
    return "float32" if device.startswith("cpu") else "bfloat16"
