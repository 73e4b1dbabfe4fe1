"""Context encoders: turn a prompt into the vector x the selector sees.

sentence: the MiniLM embedding of the caller's question (context_text), or of the prompt's
          last `tail_tokens` tokens when none is given.
policy:   the paper's choice: the policy LM's last-token hidden state over the prompt.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from laser_serve.models import causal_lm, text_encoder


class ContextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, prompt_ids: list[int], prompt_text: str, question: str) -> np.ndarray:
        """Blocking; call on the torch thread."""
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
        if question:
            return embed_texts(self.model, self.tokenizer, [question], 256)[0]
        return embed_texts(
            self.model, self.tokenizer, [prompt_text], self.tail_tokens, from_end=True
        )[0]


class PolicyContext:
    name = "policy"

    def __init__(self, model: str, device: str, loaded: tuple[Any, Any] | None = None) -> None:
        # `loaded`: a (model, tokenizer) pair already in memory, e.g. the policy being trained,
        # whose hidden states move with training (the cached `causal_lm` copy stays frozen).
        self.lm, self.tokenizer = loaded if loaded is not None else causal_lm(model, device)
        self.dim = int(self.lm.config.hidden_size)

    def encode(self, prompt_ids: list[int], prompt_text: str, question: str) -> np.ndarray:
        import torch

        ids = torch.tensor([prompt_ids], device=self.lm.device)
        with torch.inference_mode():
            out = self.lm(input_ids=ids, output_hidden_states=True)
        return out.hidden_states[-1][0, -1].float().cpu().numpy().astype(np.float64)
