"""Shared-prefix scoring equals the per-candidate path on real models (and a causal seq-cls)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laser_serve.models import SMOLLM2
from laser_serve.rewards.base import ScoreRequest
from laser_serve.rewards.causal import per_candidate_hidden, shared_prefix_hidden
from laser_serve.rewards.lm import LmJudgeRM, LmLoglikRM

REQUEST = ScoreRequest(
    messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France? " + "Think. " * 40},
    ],
    candidates=[
        "Paris.",
        "The capital of France is Paris, a city on the Seine with about two million people.",
        "",
        "Lyon",
        "I am not sure; it might be Marseille.",
    ],
    question="What is the capital of France?",
)


@pytest.mark.parametrize("cls", [LmLoglikRM, LmJudgeRM])
def test_shared_prefix_equals_per_candidate(cls: type) -> None:
    rm = cls("rm", SMOLLM2, "cpu", max_length=320, batch_size=1)  # 1-2 rows a forward
    rows = rm.rows(REQUEST)
    assert len(rows.prefix) > 100  # the shared part is most of each row
    shared = rm.score_rows(rows, shared_prefix_hidden)
    plain = rm.score_rows(rows, per_candidate_hidden)
    assert shared.shape == (5,) and np.isfinite(shared).all()
    np.testing.assert_allclose(shared, plain, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rm.score(REQUEST), shared)  # score() is the shared path
    assert len(set(np.round(shared, 3))) > 1  # the candidates are told apart


def test_loglik_prefers_the_right_answer() -> None:
    rm = LmLoglikRM("rm", SMOLLM2, "cpu", max_length=1024, batch_size=8)
    scores = rm.score(
        ScoreRequest(
            [{"role": "user", "content": "What is the capital of France?"}],
            ["The capital of France is Paris.", "The capital of France is Banana."],
            "What is the capital of France?",
        )
    )
    assert scores[0] > scores[1]


def test_long_prompt_is_cut_to_max_length() -> None:
    rm = LmJudgeRM("rm", SMOLLM2, "cpu", max_length=256, batch_size=4)
    long = ScoreRequest([{"role": "user", "content": "word " * 2000}], ["a", "b c d"], "q")
    rows = rm.rows(long)
    assert max(len(rows.prefix) + len(c) for c in rows.continuations) <= 256
    np.testing.assert_allclose(
        rm.score_rows(rows, shared_prefix_hidden),
        rm.score_rows(rows, per_candidate_hidden),
        rtol=1e-4,
        atol=1e-4,
    )


def test_causal_seq_cls_shares_the_prefix(tmp_path) -> None:  # noqa: ANN001
    """A decoder RM (score head on a causal LM, Skywork-style), random weights from a config:
    the shared path equals the full rows, and differs from it only in cost."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from laser_serve.models import resolve
    from laser_serve.rewards.seq_cls import SeqClsRM

    tok = AutoTokenizer.from_pretrained(resolve(SMOLLM2))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tok.pad_token_id or tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    rm = SeqClsRM("seq", str(tmp_path), "cpu", max_length=512, batch_size=2)
    assert rm.causal
    rows = rm.rows(REQUEST)
    shared = rm.score_rows(rows, shared_prefix_hidden)
    np.testing.assert_allclose(
        shared, rm.score_rows(rows, per_candidate_hidden), rtol=1e-4, atol=1e-5
    )
    # The same scores as the model's own forward over each full conversation.
    full = [
        rm.rm(input_ids=torch.tensor([rows.prefix + c])).logits[0, 0].item()
        for c in rows.continuations
    ]
    np.testing.assert_allclose(shared, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [LmLoglikRM, LmJudgeRM])
def test_batch_of_requests_equals_each_alone(cls: type) -> None:
    """Requests of different prompt lengths share forwards (padded prefixes, masked) and
    still get exactly their own scores, in their own order."""
    rm = cls("rm", SMOLLM2, "cpu", max_length=512, batch_size=1)  # 512-token chunks
    short = ScoreRequest([{"role": "user", "content": "2+2?"}], ["4", "five", "22"], "2+2?")
    other = ScoreRequest([{"role": "user", "content": "Name a colour."}], ["Blue."], "colour")
    requests = [REQUEST, short, other, short]
    alone = [rm.score(r) for r in requests]
    together = rm.score_batch(requests)
    assert [len(s) for s in together] == [5, 3, 1, 3]
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [LmLoglikRM, LmJudgeRM])
def test_bf16_scores_follow_fp32(cls: type) -> None:
    """On a CPU with bf16 in hardware the LM RMs run in bf16 ("auto"); the final logits stay
    fp32, so the scores keep fp32's order and the judge does not tie right and wrong."""
    fp32 = cls("rm", SMOLLM2, "cpu", max_length=320, batch_size=8).score(REQUEST)
    bf16 = cls("rm", SMOLLM2, "cpu", max_length=320, batch_size=8, dtype="bfloat16")
    assert bf16.lm.dtype == torch.bfloat16
    scores = bf16.score(REQUEST)
    assert len(set(np.round(scores, 2))) == len(scores)  # no ties
    # The order is what reranking uses. The size of bf16's error depends on the CPU's
    # kernels (0.10 of the spread on an AVX2 CPU, which emulates bf16): a loose bound only.
    assert list(np.argsort(scores)) == list(np.argsort(fp32))
    assert np.abs(scores - fp32).max() < 0.25 * (fp32.max() - fp32.min())


def test_auto_dtype_is_bf16_only_where_the_hardware_has_it(monkeypatch) -> None:  # noqa: ANN001
    from laser_serve import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert devices.pick_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert devices.pick_dtype("auto", "cpu") == "bfloat16"
    assert devices.pick_dtype("auto", "cuda:0") == "bfloat16"
    assert devices.pick_dtype("float32", "cuda") == "float32"  # an explicit dtype is kept


def test_continuation_logprobs_of_several_requests_in_chunks() -> None:
    """All requests' tokens go through the head together, a few at a time: each token still
    gets log p(token | what came before it) of its own request."""
    from laser_serve.rewards.causal import Rows, TokenLogprobs, continuation_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    requests = [
        Rows([1, 2], [[3, 4, 5], [6]]),
        Rows([7], [[8, 9], [10, 1, 2, 3], [4]]),
    ]
    hidden = [(torch.randn(8), [torch.randn(len(c), 8) for c in r.continuations]) for r in requests]
    scored = list(zip(requests, hidden, strict=True))
    for chunk in (1, 3, 512):
        got = continuation_logprobs(TokenLogprobs(head), scored, chunk_tokens=chunk)
        for (rows, (last, states)), per_request in zip(scored, got, strict=True):
            assert len(per_request) == len(rows.continuations)
            for cont, h, lp in zip(rows.continuations, states, per_request, strict=True):
                before = torch.cat([last[None], h[:-1]])
                want = head(before).log_softmax(-1)[torch.arange(len(cont)), cont]
                torch.testing.assert_close(lp, want.detach())


def test_bf16_head_log_probs_are_near_fp32() -> None:
    """A bf16 head computes each logit minus the target's inside its matmul: on SmolLM2's
    real head and hidden states that is ~10x closer to the fp32 log-probs than rounding
    the logits to bf16, and holds no fp32 copy of the head."""
    from laser_serve.rewards.causal import TokenLogprobs

    rm = LmLoglikRM("rm", SMOLLM2, "cpu", max_length=320, batch_size=8, dtype="bfloat16")
    rows = rm.rows(REQUEST)
    with torch.inference_mode():
        ids = torch.tensor([rows.prefix + rows.continuations[1]])
        states = rm.decoder(input_ids=ids).last_hidden_state[0, :-1]
        targets = ids[0, 1:]
        weight = rm.head.weight
        logits = states.float() @ weight.float().T  # fp32 from the same bf16 numbers
        exact = logits.log_softmax(-1)[torch.arange(len(targets)), targets]
        rounded = (states @ weight.T).float().log_softmax(-1)[torch.arange(len(targets)), targets]
        offset = TokenLogprobs(rm.head)
        got = offset(states, targets)
    assert offset.offset and offset.weight.dtype == torch.bfloat16
    assert offset.extra_bytes(rm.head) < weight.numel() * 4  # less than an fp32 copy
    err, rounding = (got - exact).abs(), (rounded - exact).abs()
    assert err.max() < 0.03 and err.mean() < 0.005
    assert err.mean() < rounding.mean() / 3
