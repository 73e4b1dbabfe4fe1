"""DPO + NLL loss against hand computations, and preference pairs from rankings."""

import math

import pytest
import torch

from laser_serve.training.losses import build_pairs, dpo_nll_loss, token_logps
from laser_serve.training.policy import TrainablePolicy


def test_dpo_nll_matches_hand_computation():
    # margin = (πc − rc) − (πr − rr) = (−10 + 11) − (−12 + 11) = 2; β·margin = 0.2
    loss, dpo, nll = dpo_nll_loss(
        torch.tensor([-10.0]),
        torch.tensor([-12.0]),
        torch.tensor([-11.0]),
        torch.tensor([-11.0]),
        torch.tensor([5.0]),
        beta=0.1,
        nll_weight=1.0,
    )
    expected_dpo = math.log(1 + math.exp(-0.2))  # −log σ(0.2) = 0.598139
    assert dpo.item() == pytest.approx(expected_dpo, abs=1e-6)
    assert nll.item() == pytest.approx(10.0 / 5, abs=1e-6)  # per-token NLL of the chosen
    assert loss.item() == pytest.approx(expected_dpo + 2.0, abs=1e-6)


def test_dpo_is_log2_when_policy_equals_reference_and_lambda_scales_nll():
    same = torch.tensor([-3.0, -7.0])
    loss, dpo, nll = dpo_nll_loss(
        same, same - 1, same, same - 1, torch.tensor([3.0, 7.0]), beta=0.1, nll_weight=0.5
    )
    assert torch.allclose(dpo, torch.full((2,), math.log(2.0)))
    assert torch.allclose(nll, torch.ones(2))
    assert torch.allclose(loss, dpo + 0.5 * nll)


def test_token_logps_sums_only_response_tokens():
    # vocab 3, sequence [0, 1, 2]: logits at t predict token t+1; only token 2 is response.
    logits = torch.log(torch.tensor([[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]))
    ids = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[0, 0, 1]])
    total, count = token_logps(logits, ids, mask)
    assert total.item() == pytest.approx(math.log(0.8), abs=1e-6)
    assert count.item() == 1
    total, count = token_logps(logits, ids, torch.tensor([[0, 1, 1]]))
    assert total.item() == pytest.approx(math.log(0.5) + math.log(0.8), abs=1e-6)


def test_logits_to_keep_gives_the_full_computation():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    ).eval()
    ids = torch.randint(1, 50, (3, 12))
    attention = torch.ones_like(ids)
    attention[2, 10:] = 0  # right padding
    loss_mask = torch.zeros_like(ids)
    loss_mask[0, 5:] = 1
    loss_mask[1, 7:] = 1
    loss_mask[2, 6:10] = 1
    full = token_logps(model(input_ids=ids, attention_mask=attention).logits, ids, loss_mask)
    cut = TrainablePolicy._logps(model, ids, attention, loss_mask, first=4)
    assert torch.allclose(full[0], cut[0], atol=1e-5)
    assert torch.equal(full[1], cut[1])


@pytest.mark.parametrize(
    ("scores", "max_pairs", "expected"),
    [
        ([0.1, 0.9, 0.5, 0.3], 10, [(1, 0), (2, 3)]),  # best vs worst, then inward
        ([0.1, 0.9, 0.5, 0.3], 1, [(1, 0)]),  # at most max_pairs
        ([5, 4, 3, 2, 1], 10, [(0, 4), (1, 3)]),  # odd n: the median is left out
        ([1.0, 1.0, 1.0], 10, []),  # all tied: no preference
        ([2.0, 1.0, 1.0, 0.0], 10, [(0, 3)]),  # the inner pair ties: stop there
        ([0.0, 1.0], 10, [(1, 0)]),
    ],
)
def test_build_pairs(scores, max_pairs, expected):
    assert build_pairs(scores, max_pairs) == expected


def test_build_pairs_skips_identical_texts():
    assert build_pairs([3, 2, 1, 0], 10, texts=["a", "b", "c", "a"]) == [(1, 2)]
