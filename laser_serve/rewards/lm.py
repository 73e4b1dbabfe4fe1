"""Reward models built on a causal LM: lm-judge (Yes/No logit gap) and lm-loglik."""

from __future__ import annotations

from typing import Any

import numpy as np

from laser_serve.generation.base import truncate_middle
from laser_serve.models import causal_lm, parameter_bytes
from laser_serve.rewards.base import ScoreRequest

JUDGE_TEMPLATE = (
    "Here is a request and a response.\n\nRequest:\n{prompt}\n\nResponse:\n{candidate}\n\n"
    "Is the response correct and helpful? Answer Yes or No."
)


class _CausalLmRM:
    kind = ""

    def __init__(self, name: str, model: str, device: str, max_length: int, batch_size: int):
        self.name, self.model, self.device = name, model, device
        self.max_length, self.batch_size = max_length, batch_size
        self.lm, self.tokenizer = causal_lm(model, device)

    def memory_bytes(self) -> int:
        return parameter_bytes(self.lm)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _fit_prompt(self, messages: list[dict[str, str]], reserve: int) -> list[dict[str, str]]:
        """Cut the longest turn in the middle so prompt + `reserve` tokens fit max_length."""
        longest = max(range(len(messages)), key=lambda i: len(messages[i]["content"]))
        ids = self._ids(messages[longest]["content"])
        others = sum(len(self._ids(m["content"])) for i, m in enumerate(messages) if i != longest)
        budget = max(self.max_length - reserve - others - 32 * len(messages), 16)
        if len(ids) <= budget:
            return messages
        cut = [dict(m) for m in messages]
        cut[longest]["content"] = self.tokenizer.decode(truncate_middle(ids, budget))
        return cut


class LmLoglikRM(_CausalLmRM):
    """Mean token log-probability of the candidate given the prompt (how the paper's
    reference code scores with a policy-sized LM)."""

    kind = "lm-loglik"

    def score(self, request: ScoreRequest) -> np.ndarray:
        return mean_logprobs(self, request.messages, request.candidates)


def mean_logprobs(
    rm: _CausalLmRM, messages: list[dict[str, str]], candidates: list[str]
) -> np.ndarray:
    import torch

    tok = rm.tokenizer
    cand_ids = [rm._ids(c)[: rm.max_length // 2] + [tok.eos_token_id] for c in candidates]
    longest = max(len(c) for c in cand_ids)
    prompt = tok.apply_chat_template(
        rm._fit_prompt(messages, longest),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    prompt = list(prompt)[-(rm.max_length - longest) :]
    scores = []
    for start in range(0, len(cand_ids), rm.batch_size):
        batch = cand_ids[start : start + rm.batch_size]
        rows = [prompt + c for c in batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            logits = rm.lm(input_ids=ids.to(rm.device), attention_mask=mask.to(rm.device)).logits
        logprobs = logits[:, :-1].float().log_softmax(-1)
        targets = ids[:, 1:].to(rm.device)
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for i, c in enumerate(batch):
            first = len(prompt) - 1  # logits at t predict token t+1
            scores.append(token_lp[i, first : first + len(c)].mean().item())
    return np.asarray(scores, dtype=np.float64)


class LmJudgeRM(_CausalLmRM):
    """Ask the LM whether the response is correct and helpful; score = logit(Yes) - logit(No)."""

    kind = "lm-judge"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.yes = self._ids("Yes")[0]
        self.no = self._ids("No")[0]

    def score(self, request: ScoreRequest) -> np.ndarray:
        import torch

        tok = self.tokenizer
        prompts = []
        for candidate in request.candidates:
            cand = tok.decode(truncate_middle(self._ids(candidate), self.max_length // 4))
            user = self._fit_prompt(
                [{"role": "user", "content": request.prompt}], len(self._ids(cand)) + 64
            )[0]["content"]
            text = JUDGE_TEMPLATE.format(prompt=user, candidate=cand)
            ids = tok.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            prompts.append(list(ids)[-self.max_length :])
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            rows = prompts[start : start + self.batch_size]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):  # left padding: the answer token is at the end
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift RoPE
            with torch.inference_mode():
                out = self.lm(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                )
            last = out.logits[:, -1].float()
            scores += (last[:, self.yes] - last[:, self.no]).tolist()
        return np.asarray(scores, dtype=np.float64)
