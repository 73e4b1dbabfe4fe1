"""Helpers shared by the server tests: a tiny seq-cls RM and a test configuration."""

from __future__ import annotations

import textwrap
from pathlib import Path


def build_tiny_seq_cls(folder: Path) -> Path:
    """A random 2-layer Llama reward model with the SmolLM2 tokenizer, saved like a real one."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from laser_serve.models import SMOLLM2, resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(SMOLLM2))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def server_config(tmp: Path, tiny_rm: Path, extra: str = "") -> Path:
    path = tmp / "laser.toml"
    path.write_text(
        textwrap.dedent(f"""
        [server]
        tasks = ["default", "math", "geo"]
        max_n = 8
        {extra}

        [generator]
        default_max_tokens = 16
        max_model_len = 1024

        [[reward_models]]
        name = "smol-judge"
        kind = "lm-judge"
        model = "builtin:smollm2-135m-instruct"

        [[reward_models]]
        name = "smol-loglik"
        kind = "lm-loglik"
        model = "builtin:smollm2-135m-instruct"

        [[reward_models]]
        name = "minilm-sim"
        kind = "embedding"
        model = "builtin:all-minilm-l6-v2"
        max_length = 256

        [[reward_models]]
        name = "tiny-cls"
        kind = "seq-cls"
        model = "{tiny_rm}"
        max_length = 512
    """)
    )
    return path


# Three light arms (one MiniLM, shared) start in seconds: for tests about learning, not RMs.
LIGHT_ARMS = ("sim-a", "sim-b", "sim-c")


def light_config(tmp: Path, extra: str = "") -> Path:
    path = tmp / "light.toml"
    rms = "".join(
        f'[[reward_models]]\nname = "{name}"\nkind = "embedding"\n'
        f'model = "builtin:all-minilm-l6-v2"\nmax_length = {32 * (i + 1)}\n\n'
        for i, name in enumerate(LIGHT_ARMS)
    )
    path.write_text(textwrap.dedent(extra) + "\n" + rms)
    return path


def assert_state_finite(stub) -> None:
    """Every per-arm statistic the server reports is finite."""
    import math

    from laser_serve.api import pb

    state = stub.GetSelectorState(pb.GetSelectorStateRequest())
    for arm in state.arms:
        assert math.isfinite(arm.mean_reward), arm
        assert math.isfinite(arm.last_update_unix), arm


def learns_favoured_arm(stub, favoured: str, rounds: int = 60, tail: int = 20) -> float:
    """LinUCB Reranks whose feedback is 1 when ``favoured`` was chosen, else 0; returns how
    often the last ``tail`` picks were ``favoured``."""
    from laser_serve.api import pb
    from laser_serve.client import rerank_request

    picks = []
    for i in range(rounds):
        question = f"Which answer fits question {i % 7}?"
        resp = stub.Rerank(
            rerank_request(
                question, candidates=["yes", "no"], context_text=question, expect_feedback=True
            ),
            timeout=120,
        )
        chosen = resp.reward_models[0]
        stub.Feedback(
            pb.FeedbackRequest(selection_id=resp.selection_id, reward=float(chosen == favoured)),
            timeout=60,
        )
        picks.append(chosen == favoured)
    return sum(picks[-tail:]) / tail
