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

    All prefixes run in one forward (right padded: a real token never sees a pad). Then each
    request's continuations run packed side by side in one row on top of its own prefix's
    cache: a 4D mask lets every continuation token see its prefix (not the padding) and the
    earlier tokens of its own continuation only, and positions restart at the prefix length
    for each continuation. So the cache is never copied per candidate, and the work is the
    prefix once plus the continuations once, as the physics needs. A forward holds at most
    `max_tokens` tokens (rows × (prefix + packed row), at least one row): a request whose
    continuations do not fit in one row is split over several, on copies of its cache.
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
    packed = _pack(requests, max(max_tokens - width, 1))
    hidden: list[list[torch.Tensor]] = [[] for _ in requests]
    start = 0
    while start < len(packed):
        chunk = packed[start : start + _fit(packed[start:], width, max_tokens)]
        start += len(chunk)
        owners = [i for i, _ in chunk]
        if owners == list(range(len(requests))):
            cache_layers = layers  # one row per request, in order: the cache as it is
        else:
            index = torch.tensor(owners, device=device)
            cache_layers = [(k.index_select(0, index), v.index_select(0, index)) for k, v in layers]
        ids, positions, mask = _packed_inputs(chunk, lengths, width, decoder.dtype, device)
        h = decoder(
            input_ids=ids,
            position_ids=positions,
            attention_mask=mask,
            past_key_values=DynamicCache(cache_layers, config=decoder.config),
            use_cache=True,
        ).last_hidden_state
        for j, (i, conts) in enumerate(chunk):
            offset = 0
            for c in conts:
                hidden[i].append(h[j, offset : offset + len(c)])
                offset += len(c)
    return list(zip(lasts, hidden, strict=True))


Packed = tuple[int, list[list[int]]]  # (request index, continuations side by side in one row)


def _pack(requests: Sequence[Rows], row_tokens: int) -> list[Packed]:
    """Each request's continuations, in order, in rows of at most `row_tokens` tokens (a
    longer continuation gets a row of its own)."""
    out: list[Packed] = []
    for i, r in enumerate(requests):
        row: list[list[int]] = []
        for c in r.continuations:
            if row and sum(map(len, row)) + len(c) > row_tokens:
                out.append((i, row))
                row = []
            row.append(c)
        if row:
            out.append((i, row))
    return out


def _packed_inputs(
    chunk: Sequence[Packed], lengths: Sequence[int], width: int, dtype: Any, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, positions and the additive 4D mask (rows, 1, row, width + row) of packed
    rows over a cache of `width` prefix slots."""
    row = max(sum(map(len, conts)) for _, conts in chunk)
    ids = torch.zeros((len(chunk), row), dtype=torch.long)
    positions = torch.zeros((len(chunk), row), dtype=torch.long)
    segment = torch.full((len(chunk), row), -1)  # which continuation a slot holds (-1: pad)
    for j, (i, conts) in enumerate(chunk):
        offset = 0
        for s, c in enumerate(conts):
            ids[j, offset : offset + len(c)] = torch.tensor(c)
            positions[j, offset : offset + len(c)] = lengths[i] + torch.arange(len(c))
            segment[j, offset : offset + len(c)] = s
            offset += len(c)
    own = torch.tensor([lengths[i] for i, _ in chunk])[:, None, None]
    sees_prefix = (torch.arange(width)[None, None, :] < own).expand(-1, row, -1)
    q = torch.arange(row)
    causal = q[None, :] <= q[:, None]  # key slot <= query slot
    same = segment[:, :, None] == segment[:, None, :]
    sees_own = same & causal[None] & (segment[:, :, None] >= 0)
    allowed = torch.cat([sees_prefix, sees_own], dim=2)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return ids.to(device), positions.to(device), mask.to(device)


def _fit(rows: Sequence[Packed], prefix: int, max_tokens: int) -> int:
    """How many packed rows fit in one forward: rows × (prefix + widest) <= max_tokens."""
    widest = 0
    for count, (_, conts) in enumerate(rows, 1):
        widest = max(widest, sum(map(len, conts)))
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


class TokenLogprobs:
    """log p(token | hidden state) over the whole vocabulary, in fp32: lm-loglik's head, its
    costliest step (tokens × hidden size × vocabulary).

    An fp32 head computes the logits and their log-sum-exp directly. A bf16 head would round
    its logits to bf16, ~0.1 off at magnitudes of 20-30, as large as the gaps between
    candidates' mean log-probs; an fp32 copy of it costs 2.4× the time on an AMX CPU. So a
    bf16 (or fp16) head computes, in one matmul in its own dtype, each logit *minus the
    target token's logit*: the weight carries three extra columns of ones and each state
    three extra entries holding -logit(target) split exactly into three parts of the head's
    dtype, so the subtraction happens in the matmul's fp32 accumulation, before the output
    is rounded. log p(target) = -logsumexp(outputs), and the outputs that decide it are
    small, so rounding them costs ~0.002 nats a token on the 0.5B (0.016 for bf16 logits).
    The target's own logit is an exact fp32 dot product.
    """

    def __init__(self, head: Any):
        weight = head.weight.detach()
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else bias.detach().float()
        self.dim = weight.shape[1]
        self.offset = weight.dtype != torch.float32 and self.bias is None
        if not self.offset:
            self.weight = weight.float()  # the head itself when it is fp32
            return
        width = -(-(self.dim + 3) // 64) * 64  # room for the offset, padded for the kernels
        self.weight = weight.new_zeros((weight.shape[0], width))
        self.weight[:, : self.dim] = weight
        self.weight[:, self.dim : self.dim + 3] = 1

    def extra_bytes(self, head: Any) -> int:
        """Memory held beyond the head's own weights."""
        same = self.weight.data_ptr() == head.weight.data_ptr()
        return 0 if same else self.weight.numel() * self.weight.element_size()

    @torch.inference_mode()
    def __call__(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(targets[i] | states[i]) for every row i, fp32."""
        if not self.offset:
            logits = torch.nn.functional.linear(states.float(), self.weight, self.bias)
            return logits.gather(-1, targets[:, None])[:, 0] - logits.logsumexp(-1)
        d, dtype = self.dim, self.weight.dtype
        own = (states.float() * self.weight[targets, :d].float()).sum(-1)
        rows = states.new_zeros((len(states), self.weight.shape[1]), dtype=dtype)
        rows[:, :d] = states
        rest = own
        for k in range(3):  # -own as three parts of the head's dtype that sum to it exactly
            part = rest.to(dtype)
            rows[:, d + k] = -part
            rest = rest - part.float()
        return -(rows @ self.weight.T).float().logsumexp(-1)


def continuation_logprobs(
    head: TokenLogprobs, scored: Sequence[tuple[Rows, Hidden]], chunk_tokens: int = 512
) -> list[list[torch.Tensor]]:
    """Log-probability (fp32) of every continuation token given everything before it, for
    each (rows, hidden states) of one or several requests.

    Token t of a continuation is predicted from the hidden state before it: the prefix's
    last one for t = 0, the continuation's own for later t. Every request's tokens go
    through the head together, `chunk_tokens` at a time: the vocabulary-sized head is most
    of lm-loglik's cost, and one continuation at a time would read its weights once per
    continuation instead of once per chunk.
    """
    before, targets, sizes = [], [], []
    for rows, (prefix_last, hidden) in scored:
        for h, cont in zip(hidden, rows.continuations, strict=True):
            before.append(torch.cat([prefix_last[None], h[:-1]]))
            targets += cont
            sizes.append(len(cont))
    states = torch.cat(before)
    target = torch.tensor(targets, device=states.device)
    picked = [
        head(states[start : start + chunk_tokens], target[start : start + chunk_tokens])
        for start in range(0, len(targets), chunk_tokens)
    ]
    each = iter(torch.cat(picked).split(sizes))
    return [[next(each) for _ in rows.continuations] for rows, _ in scored]
