"""Held-out accuracy with greedy decoding, in batches."""

from __future__ import annotations

from typing import Any

from laser_serve.generation.base import Sampling
from laser_serve.training.data import Example, follows_format, is_correct
from laser_serve.training.policy import TrainablePolicy


def evaluate(
    policy: TrainablePolicy, examples: list[Example], max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    """Accuracy (answer extracted as the data kind says) and the share of responses that end
    in the asked format."""
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=max_new_tokens)
    correct = formatted = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        prompts = [policy.prompt(ex.messages(), max_new_tokens) for ex in batch]
        for ex, (response,) in zip(batch, policy.sample(prompts, greedy), strict=True):
            correct += is_correct(response.text, ex)
            formatted += follows_format(response.text, ex.kind)
    return {
        "n": len(examples),
        "accuracy": correct / len(examples),
        "format_rate": formatted / len(examples),
    }
