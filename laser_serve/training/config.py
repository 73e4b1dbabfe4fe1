"""Every knob of `laser-train`, one named value each (nanoGPT style); the CLI mirrors them.

Defaults follow LASeR (arXiv 2410.01735) and its authors' code (LASeR-MAB) where they state
one: n=30 samples at temperature 0.8, P=10 pairs per prompt, batches of 16, β=0.1, NLL
weight 1, Adam at 5e-6, LoRA r=16/α=32 on q_proj,v_proj with dropout 0.1, LinUCB α=0.1 on
unnormalized last-token hidden states, quantile (20th/80th) reward normalization. The
authors train 10 iterations; one is the default here because a CPU iteration over GSM8K
takes days. Knobs the paper does not state are marked "ours".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from laser_serve.models import SMOLLM2

DATASETS = ("gsm8k", "jsonl", "strategyqa")
GROUPINGS = ("batch", "instance")
GENERATORS = ("hf", "vllm")


@dataclass
class TrainConfig:
    # --- data ---
    data: str = "gsm8k"  # gsm8k | jsonl (rows {"prompt","answer"}) | strategyqa (yes/no answers)
    data_dir: str = ""  # gsm8k: $LASER_GSM8K_DIR, else ../shared/data/gsm8k next to the repo
    train_size: int = 0  # use the first N training examples after shuffling (0: all)
    eval_size: int = 100  # held-out examples scored before and after each iteration (ours)
    # --- policy model ---
    model: str = SMOLLM2  # policy LM: builtin:*, a local folder or a cached HF id
    full: bool = False  # full fine-tuning instead of LoRA (reference: the frozen initial model)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.1  # dropout on the LoRA input
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  # modules
    max_prompt_tokens: int = 512  # longer prompts are cut in the middle (ours)
    # --- sampling and pairs ---
    iterations: int = 1  # passes over the training prompts (the paper: 10)
    batch_size: int = 16  # prompts per batch; one selector choice per batch (or per group)
    n: int = 30  # sampled responses per prompt
    pairs: int = 10  # preference pairs per prompt: best vs worst, then inward (≤ n/2)
    temperature: float = 0.8  # sampling temperature of the n responses
    top_p: float = 1.0  # nucleus sampling (1.0: off)
    max_new_tokens: int = 150  # the authors' code samples 150 new tokens
    generator: str = "hf"  # hf (transformers) | vllm (LoRA adapter reloaded per step; no --full)
    vllm_memory: float = 0.1  # vllm: gpu_memory_utilization (on CPU: share of the node's RAM)
    # --- loss and optimizer ---
    beta: float = 0.1  # DPO temperature
    nll_weight: float = 1.0  # λ in L = DPO + λ·NLL(chosen)
    lr: float = 5e-6  # AdamW learning rate (the authors' value, for full fine-tuning)
    weight_decay: float = 0.0  # AdamW weight decay (0: Adam, as the authors' code)
    max_grad_norm: float = 0.0  # 0: no clipping (as the authors' code)
    micro_batch: int = 8  # sequences per forward pass in the loss; gradients accumulate (ours)
    # --- selector ---
    policy: str = "linucb"  # linucb | random | fixed:<rm> | round-robin | ensemble
    grouping: str = "batch"  # batch: one RM per batch | instance: one step per RM group (ours)
    alpha: float = 0.1  # LinUCB exploration
    lam: float = 1.0  # LinUCB ridge
    normalize_context: bool = False  # unit-normalize contexts (the paper does not)
    reward_norm: str = "quantile"  # none | quantile | minmax
    window: int = 1000  # rewards kept for the quantiles
    # --- reward models ---
    reward_models: list[str] = field(default_factory=list)  # pool subset by name (empty: all)
    rm_config: str = ""  # laser-serve TOML whose [[reward_models]] replace the default pool
    verifier: bool = False  # add the exact-match verifier RM (needs gold answers)
    # --- evaluation ---
    eval_max_new_tokens: int = 256  # greedy tokens per held-out answer (ours)
    eval_batch_size: int = 16  # held-out prompts per generate call
    # --- run ---
    seed: int = 0  # data order, sampling, LoRA init and the selector's own randomness
    out: str = "runs/laser-train"  # run folder: log.jsonl, summary.json, checkpoints, adapter
    resume: bool = False  # continue the run in --out from its latest checkpoint
    max_steps: int = 0  # stop after this many batches in total (0: run every iteration)
    checkpoint_every: int = 1  # batches between checkpoints (the last batch always saves)
    log_candidates: bool = False  # also log every sampled response text (large)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (the policy and RMs set to auto)
    threads: int = 0  # torch CPU threads (0: torch's default)
    progress: bool = True  # tqdm progress bar

    def max_model_len(self) -> int:
        """Tokens a prompt plus its sampled or evaluated answer may take."""
        return self.max_prompt_tokens + max(self.max_new_tokens, self.eval_max_new_tokens)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
