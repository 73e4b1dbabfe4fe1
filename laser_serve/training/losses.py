"""Preference pairs from one RM's ranking, and the DPO + λ·NLL loss (Pang et al. 2024's
objective as LASeR uses it; the DPO term is TRL's sigmoid loss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def build_pairs(
    scores: Sequence[float] | np.ndarray, max_pairs: int, texts: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """(chosen, rejected) candidate indices for one prompt: best vs worst, second best vs
    second worst, and so on inward, at most `max_pairs`. Tied scores carry no preference, so
    the pairing stops at the first tie; pairs of identical texts are skipped (their DPO
    gradient is zero and their loss a constant log 2)."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")  # best first; ties keep sampling order
    pairs: list[tuple[int, int]] = []
    for i in range(len(order) // 2):
        chosen, rejected = int(order[i]), int(order[-1 - i])
        if len(pairs) >= max_pairs or not s[chosen] > s[rejected]:
            break  # inner pairs are at most as far apart: tied too
        if texts is not None and texts[chosen] == texts[rejected]:
            continue
        pairs.append((chosen, rejected))
    return pairs


def token_logps(logits: Any, input_ids: Any, loss_mask: Any) -> tuple[Any, Any]:
    """Summed log-probability of the masked tokens of each row, and how many there are.

    logits[:, t] predicts input_ids[:, t + 1]; `loss_mask` marks the response tokens.
    """
    logps = logits[:, :-1].float().log_softmax(-1)
    targets = input_ids[:, 1:]
    mask = loss_mask[:, 1:].to(logps.dtype)
    per_token = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(-1), mask.sum(-1)


def dpo_nll_loss(
    policy_chosen: Any,
    policy_rejected: Any,
    ref_chosen: Any,
    ref_rejected: Any,
    chosen_tokens: Any,
    beta: float,
    nll_weight: float,
) -> tuple[Any, Any, Any]:
    """Per-pair (loss, dpo, nll) from summed sequence log-probs.

    dpo = -logsigmoid(β·((πc − rc) − (πr − rr)))   (TRL's "sigmoid" loss)
    nll = −πc / |chosen tokens|                      (per-token NLL of the chosen response)
    loss = dpo + λ·nll
    """
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    dpo = -F.logsigmoid(beta * margin)
    nll = -policy_chosen / chosen_tokens.clamp(min=1)
    return dpo + nll_weight * nll, dpo, nll
