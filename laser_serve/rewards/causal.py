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


# (hidden state of the prefix's last token, each continuation's hidden states)
Hidden = tuple[torch.Tensor, list[torch.Tensor]]
# shared_prefix_hidden or per_candidate_hidden
HiddenPath = Callable[..., Hidden]


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
    """The decoder body (embeddings, layers, final norm) of a causal LM or seq-cls model,
    also when it is wrapped by peft (whose `base_model` is the LoRA wrapper, not the body)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.base_model


def shared_prefix_hidden(decoder: Any, rows: Rows, max_tokens: int) -> Hidden:
    """Hidden states of the prefix's last token (d,) and of each continuation (len_i, d):
    the prefix runs once, the continuations on top of its cache."""
    return shared_prefix_hidden_many(decoder, [rows], max_tokens)[0]


@torch.inference_mode()
def shared_prefix_hidden_many(
    decoder: Any, requests: Sequence[Rows], max_tokens: int
) -> list[Hidden]:
    """`shared_prefix_hidden` of several requests in as few forwards as memory allows.

    All prefixes run in one forward (right padded: a real token never sees a pad). The
    continuations of every request then run in chunks, each row on a copy of its own
    request's cache; an attention mask hides the padding of shorter prefixes and positions
    continue from each row's own prefix length. A chunk holds at most `max_tokens` tokens
    (rows × (prefix + continuation), at least one row), so short rows batch wide and long
    rows narrow, within the memory the caller allows.
    """
    from transformers import DynamicCache

    device = decoder.device
    lengths = [len(r.prefix) for r in requests]
    width = max(lengths)
    ids = torch.zeros((len(requests), width), dtype=torch.long, device=device)
    for i, r in enumerate(requests):
        ids[i, : lengths[i]] = torch.tensor(r.prefix, device=device)
    out = decoder(input_ids=ids, use_cache=True)
    layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    lasts = [out.last_hidden_state[i, n - 1] for i, n in enumerate(lengths)]
    rows = [(i, c) for i, r in enumerate(requests) for c in r.continuations]
    hidden: list[list[torch.Tensor]] = [[] for _ in requests]
    start = 0
    while start < len(rows):
        chunk = rows[start : start + _fit(rows[start:], width, max_tokens)]
        start += len(chunk)
        owner = torch.tensor([i for i, _ in chunk], device=device)
        cont = max(len(c) for _, c in chunk)
        ids = torch.zeros((len(chunk), cont), dtype=torch.long, device=device)
        for j, (_, c) in enumerate(chunk):
            ids[j, : len(c)] = torch.tensor(c, device=device)
        own = torch.tensor([lengths[i] for i, _ in chunk], device=device)[:, None]
        kwargs: dict[str, Any] = {}
        if (own < width).any():  # some prefixes are padded: mask the pads, shift positions
            slots = torch.arange(width + cont, device=device)[None, :]
            kwargs["attention_mask"] = ((slots < own) | (slots >= width)).long()
            kwargs["position_ids"] = own + torch.arange(cont, device=device)[None, :]
        cache = DynamicCache(
            [(k.index_select(0, owner), v.index_select(0, owner)) for k, v in layers],
            config=decoder.config,
        )
        h = decoder(input_ids=ids, past_key_values=cache, use_cache=True, **kwargs)
        for j, (i, c) in enumerate(chunk):
            hidden[i].append(h.last_hidden_state[j, : len(c)])
    return list(zip(lasts, hidden, strict=True))


def _fit(rows: Sequence[tuple[int, list[int]]], prefix: int, max_tokens: int) -> int:
    """How many of `rows` fit in one forward: rows × (prefix + widest) <= max_tokens."""
    widest = 0
    for count, (_, c) in enumerate(rows, 1):
        widest = max(widest, len(c))
        if count > 1 and count * (prefix + widest) > max_tokens:
            return count - 1
    return len(rows)


@torch.inference_mode()
def per_candidate_hidden(decoder: Any, rows: Rows, max_tokens: int) -> Hidden:
    """The same hidden states as `shared_prefix_hidden`, from full rows (the old path)."""
    device = decoder.device
    p = len(rows.prefix)
    prefix_last: torch.Tensor | None = None
    hidden: list[torch.Tensor] = []
    conts = rows.continuations
    per_forward = max(1, max_tokens // (p + max(len(c) for c in conts)))
    for start in range(0, len(conts), per_forward):
        batch = [rows.prefix + c for c in conts[start : start + per_forward]]
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
