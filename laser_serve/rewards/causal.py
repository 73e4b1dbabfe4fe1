"""Scoring n continuations of one shared prefix on a causal decoder, at the prefix limit.

Every RM built on a causal LM (lm-loglik, lm-judge, a causal seq-cls RM) scores rows of the
form prefix + continuation_i, where the prefix (the prompt, or the judge template up to the
candidate) is the same for all n candidates. `shared_prefix_hidden` runs the decoder over
the prefix once, keeps its key/value cache, and runs only the continuations on top of it,
the cache expanded over each batch: the prefix is computed once instead of n times.
`per_candidate_hidden` is the plain path (every row in full); it gives the same hidden
states to float tolerance and stays as the reference that tests and `laser-bench
rerank-cost` compare against.

Both return the decoder's last hidden state (after the final norm), not logits: the RM
applies its own head only where it needs it (the judge at one position, loglik at the
candidate's tokens), so no vocabulary-sized logits are computed for prompt positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Rows:
    """Token ids: one prefix shared by every row, and each row's own continuation."""

    prefix: list[int]
    continuations: list[list[int]]


# shared_prefix_hidden or per_candidate_hidden
HiddenPath = Callable[..., tuple[torch.Tensor, list[torch.Tensor]]]


# Marks where the candidate goes when a template is rendered to text and split in two.
SLOT = "\x00candidate\x00"


def split_at_slot(
    tokenizer: Any, messages: list[dict[str, str]], **template: Any
) -> tuple[list[int], list[int]]:
    """Token ids of a chat template rendered around `SLOT`: (before, after)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, **template)
    before, sep, after = text.partition(SLOT)
    if not sep:
        raise ValueError("the chat template dropped the candidate")
    ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    return list(ids), list(tokenizer(after, add_special_tokens=False)["input_ids"])


def decoder_of(model: Any) -> Any:
    """The decoder body (embeddings, layers, final norm) of a causal LM or seq-cls model."""
    return model.base_model


@torch.inference_mode()
def shared_prefix_hidden(
    decoder: Any, rows: Rows, batch_size: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Hidden states of the prefix's last token (d,) and of each continuation (len_i, d).

    The prefix runs once; each batch of continuations runs with the prefix's cache expanded
    to the batch (right padding, so real tokens never see pads and default positions are
    right). The cache is rebuilt per batch because a forward appends to it.
    """
    device = decoder.device
    from transformers import DynamicCache

    prefix = torch.tensor([rows.prefix], device=device)
    out = decoder(input_ids=prefix, use_cache=True)
    prefix_cache = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    prefix_last = out.last_hidden_state[0, -1]
    hidden: list[torch.Tensor] = []
    conts = rows.continuations
    for start in range(0, len(conts), batch_size):
        batch = conts[start : start + batch_size]
        width = max(len(c) for c in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for i, c in enumerate(batch):
            ids[i, : len(c)] = torch.tensor(c, device=device)
        b = len(batch)
        cache = DynamicCache(
            [(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in prefix_cache],
            config=decoder.config,
        )
        h = decoder(input_ids=ids, past_key_values=cache, use_cache=True).last_hidden_state
        hidden += [h[i, : len(c)] for i, c in enumerate(batch)]
    return prefix_last, hidden


@torch.inference_mode()
def per_candidate_hidden(
    decoder: Any, rows: Rows, batch_size: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The same hidden states as `shared_prefix_hidden`, from full rows (the old path)."""
    device = decoder.device
    p = len(rows.prefix)
    prefix_last: torch.Tensor | None = None
    hidden: list[torch.Tensor] = []
    conts = rows.continuations
    for start in range(0, len(conts), batch_size):
        batch = [rows.prefix + c for c in conts[start : start + batch_size]]
        width = max(len(r) for r in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for i, r in enumerate(batch):
            ids[i, : len(r)] = torch.tensor(r, device=device)
        h = decoder(input_ids=ids).last_hidden_state  # right padding: causal mask suffices
        if prefix_last is None:
            prefix_last = h[0, p - 1]
        hidden += [h[i, p : len(r)] for i, r in enumerate(batch)]
    assert prefix_last is not None
    return prefix_last, hidden


def continuation_logprobs(
    head: Any, prefix_last: torch.Tensor, hidden: Sequence[torch.Tensor], rows: Rows
) -> list[torch.Tensor]:
    """Log-probability (fp32) of every continuation token given everything before it.

    Token t of a continuation is predicted from the hidden state before it: the prefix's
    last one for t = 0, the continuation's own for later t.
    """
    out = []
    for h, cont in zip(hidden, rows.continuations, strict=True):
        before = torch.cat([prefix_last[None], h[:-1]])
        logprobs = head(before).float().log_softmax(-1)
        target = torch.tensor(cont, device=logprobs.device)
        out.append(logprobs.gather(-1, target[:, None])[:, 0])
    return out
