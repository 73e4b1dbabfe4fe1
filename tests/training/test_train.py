"""End to end on SmolLM2-135M: one iteration, two batches of two prompts, n=4, LoRA r=4
(conftest.py), once per sampling backend: transformers (`--generator hf`) and vLLM under
the step's LoRA adapter (`--generator vllm`).

One uninterrupted run and one run stopped after its first batch and resumed; the assertions
read their logs, summaries and adapters. Short prompts and 8 new tokens keep it CPU-sized.
With vLLM the three runs share one engine (a second engine start would double this file's
time): the resumed run loads its step's adapter from disk under a new LoRA id, as a resume
in a new process does, so what it samples depends only on what was saved.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from laser_serve.generation.base import Sampling
from laser_serve.models import SMOLLM2, causal_lm, load_causal_lm
from laser_serve.rewards import ScoreRequest, make_reward_model
from laser_serve.training.data import make_example
from laser_serve.training.loop import train
from laser_serve.training.losses import build_pairs
from laser_serve.training.policy import Pair, TrainablePolicy
from laser_serve.training.pool import pool_configs
from laser_serve.training.vllm_sampler import VllmSampler

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def vllm(tiny_config):
    with VllmSampler.for_config(tiny_config) as sampler:
        yield sampler


@pytest.fixture(scope="module", params=["hf", "vllm"])
def runs(request, tmp_path_factory, tiny_config):
    base = dataclasses.replace(tiny_config, generator=request.param)
    shared = request.getfixturevalue("vllm") if request.param == "vllm" else None
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp(f"runs-{request.param}")
    quiet = lambda _: None  # noqa: E731
    try:
        full = train(dataclasses.replace(base, out=str(root / "full")), quiet, shared)
        cut = dataclasses.replace(base, out=str(root / "cut"), max_steps=1)
        first = train(cut, quiet, shared)
        resumed = train(dataclasses.replace(cut, max_steps=0, resume=True), quiet, shared)
    finally:
        torch.set_num_threads(threads)
    return {"base": base, "root": root, "full": full, "first": first, "resumed": resumed}


def _log(path):
    return [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(path / "adapter" / "adapter_model.safetensors")


def test_losses_are_finite_and_every_batch_trained(runs):
    log = _log(runs["root"] / "full")
    assert [r["step"] for r in log] == [0, 1]
    for r in log:
        assert r["pairs"] >= 1
        for key in ("loss", "dpo", "nll", "reward", "reward_normalized"):
            assert math.isfinite(r[key])
        assert r["loss"] == pytest.approx(r["dpo"] + r["nll"], rel=1e-5)  # λ = 1
        assert r["reward"] == -r["loss"]
        assert 0.0 <= r["reward_normalized"] <= 1.0
    assert log[0]["dpo"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at first
    summary = runs["full"]
    assert summary["completed"] and summary["updates"] == 2
    assert [a["iteration"] for a in summary["accuracy"]] == [0, 1]
    assert [p["name"] for p in summary["pool"]] == [
        "smol-judge",
        "smol-loglik",
        "minilm-sim",
        "verifier",
    ]


def test_pairs_come_from_the_chosen_rms_ranking(runs):
    pool = {rm.name: rm for rm in pool_configs(runs["base"])}
    for r in _log(runs["root"] / "full"):
        (name,) = r["arms"]
        rm = make_reward_model(pool[name])  # lm and embedding RMs come from the shared caches
        for entry in r["ranking"][:1]:  # one prompt per step keeps the test short
            # Re-score the logged candidates with the logged RM: same scores, same pairs.
            ex = make_example(entry["question"], entry["answer"])
            texts = entry["candidates"]
            scores = rm.score(ScoreRequest(ex.messages(), texts, ex.question, ex.answer))
            np.testing.assert_allclose(scores, entry["scores"], atol=1e-4)
            assert [tuple(p) for p in entry["pairs"]] == build_pairs(scores, 1, texts)
            assert len(entry["pairs"]) == 1


def test_selector_pulls_follow_the_log(runs):
    log = _log(runs["root"] / "full")
    chosen = [r["rm"] for r in log]
    for name, s in runs["full"]["selections"].items():
        assert s["pulls"] == chosen.count(name)
        assert s["selections"] == chosen.count(name)  # batch grouping: one choice per batch
    assert sum(s["pulls"] for s in runs["full"]["selections"].values()) == 2


def test_resume_equals_uninterrupted(runs):
    assert not runs["first"]["completed"] and runs["first"]["steps"] == 1
    full, resumed = _log(runs["root"] / "full"), _log(runs["root"] / "cut")
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed, strict=True):
        assert a["arms"] == b["arms"]
        assert a["ranking"] == b["ranking"]  # same samples, scores and pairs
        for key in ("loss", "dpo", "nll", "reward_normalized"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
    wa, wb = _adapter(runs["root"] / "full"), _adapter(runs["root"] / "cut")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-6, rtol=0), key
    accuracy = [(a["iteration"], a["accuracy"]) for a in runs["full"]["accuracy"]]
    assert [(a["iteration"], a["accuracy"]) for a in runs["resumed"]["accuracy"]] == accuracy


def test_adapter_reloads_with_peft_and_moved_the_policy(runs):
    from peft import PeftModel

    folder = runs["root"] / "full" / "adapter"
    base, tok = load_causal_lm(SMOLLM2, "cpu", "float32")  # the trained policy's dtype
    ids = torch.tensor([tok("What is 2 + 3?")["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, folder).eval()
        after = reloaded(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-4)  # training changed the policy
    # The resume path (set_peft_model_state_dict) loads the same weights as from_pretrained.
    from laser_serve.training.policy import TrainablePolicy

    policy = TrainablePolicy(runs["base"], "cpu")
    policy.load(folder)
    with torch.no_grad():
        assert torch.allclose(policy.lm(input_ids=ids).logits, after, atol=1e-6)


def test_shared_frozen_model_was_not_trained(runs):
    cached, _ = causal_lm(SMOLLM2, "cpu")  # what lm-judge / lm-loglik score with
    assert not any("lora" in name for name, _ in cached.named_parameters())
    fresh, _ = load_causal_lm(SMOLLM2, "cpu", str(cached.dtype).removeprefix("torch."))
    for (name, a), (_, b) in zip(
        cached.state_dict().items(), fresh.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_vllm_samples_follow_the_adapter(vllm, tiny_config):
    """After steps that move the policy far, vLLM's greedy answers under the newly published
    adapter are transformers' greedy answers of the same model, and no longer the base's."""
    torch.manual_seed(0)
    policy = TrainablePolicy(dataclasses.replace(tiny_config, generator="vllm"), "cpu", vllm)
    questions = ["What is 2 + 3?", "Name a colour.", "What is the capital of France?"]
    prompts = [policy.prompt([{"role": "user", "content": q}], 16) for q in questions]
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=16)

    def answers():
        by_vllm = [c.text for (c,) in policy.sample(prompts, greedy)]
        by_hf = [c.text for (c,) in policy.generator.generate_blocking(prompts, greedy)]
        return by_vllm, by_hf

    before, hf_before = answers()
    assert before == hf_before
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    tok = policy.tokenizer
    pair = Pair(prompts[0], tok("Banana banana banana!")["input_ids"], tok("5")["input_ids"])
    for _ in range(3):
        policy.preference_step([pair, pair], optimizer)
    after, hf_after = answers()
    assert after == hf_after
    assert all(a != b for a, b in zip(after, before, strict=True)), (before, after)
