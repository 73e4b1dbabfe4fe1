"""Context encoders: turn a prompt into the vector x the selector sees.

sentence: the MiniLM embedding of the caller's question (context_text), or of the prompt's
          last `tail_tokens` tokens when none is given.
policy:   the paper's choice: the policy LM's last-token hidden state over the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from laser_serve.models import causal_lm, text_encoder

# What a context is encoded from: (prompt token ids, prompt text, question).
ContextInput = tuple[list[int], str, str]


class ContextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, prompt_ids: list[int], prompt_text: str, question: str) -> np.ndarray:
        """Blocking; call on the torch thread."""
        ...

    def encode_batch(self, items: Sequence[ContextInput]) -> list[np.ndarray]:
        """`encode` of several prompts in shared forwards (equal to each alone)."""
        ...


def embed_texts(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, from_end: bool = False
) -> np.ndarray:
    """Mean-pooled, L2-normalized sentence embeddings (all-MiniLM-L6-v2's pooling)."""
    import torch

    tokenizer.truncation_side = "left" if from_end else "right"
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(model.device)
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy().astype(np.float64)


class SentenceContext:
    name = "sentence"

    def __init__(self, model: str, device: str, tail_tokens: int = 256) -> None:
        self.model, self.tokenizer = text_encoder(model, device)
        self.dim = int(self.model.config.hidden_size)
        self.tail_tokens = tail_tokens

    def encode(self, prompt_ids: list[int], prompt_text: str, question: str) -> np.ndarray:
        return self.encode_batch([(prompt_ids, prompt_text, question)])[0]

    def encode_batch(self, items: Sequence[ContextInput]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        asked = [i for i, (_, _, q) in enumerate(items) if q]
        tails = [i for i, (_, _, q) in enumerate(items) if not q]
        if asked:
            texts = [items[i][2] for i in asked]
            for i, v in zip(
                asked, embed_texts(self.model, self.tokenizer, texts, 256), strict=True
            ):
                out[i] = v
        if tails:  # no question: the prompt's last tokens
            texts = [items[i][1] for i in tails]
            emb = embed_texts(self.model, self.tokenizer, texts, self.tail_tokens, from_end=True)
            for i, v in zip(tails, emb, strict=True):
                out[i] = v
        return out


class PolicyContext:
    name = "policy"

    def __init__(self, model: str, device: str, loaded: tuple[Any, Any] | None = None) -> None:
        # `loaded`: a (model, tokenizer) pair already in memory, e.g. the policy being trained,
        # whose hidden states move with training (the cached `causal_lm` copy stays frozen).
        self.lm, self.tokenizer = loaded if loaded is not None else causal_lm(model, device)
        self.dim = int(self.lm.config.hidden_size)

    def encode(self, prompt_ids: list[int], prompt_text: str, question: str) -> np.ndarray:
        return self.encode_batch([(prompt_ids, prompt_text, question)])[0]

    def encode_batch(self, items: Sequence[ContextInput]) -> list[np.ndarray]:
        import torch

        from laser_serve.rewards.causal import decoder_of

        lengths = [len(ids) for ids, _, _ in items]
        batch = torch.zeros((len(items), max(lengths)), dtype=torch.long)
        for i, (ids, _, _) in enumerate(items):
            batch[i, : len(ids)] = torch.tensor(ids)  # right padding: causal, pads unseen
        with torch.inference_mode():
            hidden = decoder_of(self.lm)(input_ids=batch.to(self.lm.device)).last_hidden_state
        return [
            hidden[i, n - 1].float().cpu().numpy().astype(np.float64) for i, n in enumerate(lengths)
        ]
