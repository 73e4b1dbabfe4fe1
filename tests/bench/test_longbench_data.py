"""LongBench data loading and keying, prompts, the pool cache and the requests the bench sends."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from laser_bench import longbench as lb
from laser_bench import longbench_eval as lbe
from laser_bench.cli import main as bench_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "longbench"  # ../shared


def row(input_text: str, context: str, answers: list[str], _id: str | None = None) -> dict:
    return {
        "input": input_text,
        "context": context,
        "answers": answers,
        "length": len(context.split()),
        "dataset": "qasper",
        "language": "en",
        "all_classes": None,
        "_id": _id,
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_rows_with_null_id_are_keyed_by_input_and_context(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "qasper.jsonl",
        [
            row("q1", "a long context", ["x"]),
            row("q2", "a long context", ["y"]),
            row("q1", "a long context", ["x"]),  # duplicate of the first: kept once
            row("q1", "short", ["z"], _id="abc"),
        ],
    )
    exs = lbe.load_examples(tmp_path)["qasper"]
    assert [e.input for e in exs] == ["q1", "q2", "q1"]
    assert len({e.key for e in exs}) == 3
    assert exs[0].id is None and exs[2].id == "abc"
    assert exs[0].key == lbe.example_key("q1", "a long context")
    assert exs[0].all_classes == () and exs[0].answers == ("x",)
    # The key separates input and context: moving text between them changes it.
    assert lbe.example_key("ab", "c") != lbe.example_key("a", "bc")


def test_limit_and_shortest(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "hotpotqa.jsonl",
        [row(f"q{i}", "word " * n, ["a"]) for i, n in enumerate((50, 5, 30, 1))],
    )
    assert [e.input for e in lbe.load_examples(tmp_path, limit=2)["hotpotqa"]] == ["q0", "q1"]
    shortest = lbe.load_examples(tmp_path, limit=2, shortest=True)["hotpotqa"]
    assert [e.input for e in shortest] == ["q3", "q1"]


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(lbe.DataNotFoundError) as err:
        lbe.load_examples(tmp_path / "nowhere", ["qasper", "trec"])
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "qasper.jsonl" in msg and "trec.jsonl" in msg
    assert "--data" in msg and "LASER_LONGBENCH_DIR" in msg
    with pytest.raises(ValueError, match="unknown task"):
        lbe.load_examples(tmp_path, ["no_such_task"])


def test_only_present_tasks_are_loaded(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "trec.jsonl", [row("q", "c", ["City"])])
    assert list(lbe.load_examples(tmp_path)) == ["trec"]


def test_cli_without_data_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LASER_LONGBENCH_DIR", str(tmp_path / "empty"))
    assert bench_main(["longbench", "--server", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "no LongBench data in" in err and str(tmp_path / "empty") in err
    assert "Traceback" not in err


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["longbench", "--n", "0", "--server", "127.0.0.1:1"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared LongBench rows not on this machine")
def test_shared_rows_load() -> None:
    exs = lbe.load_examples(SHARED)
    assert {"qasper", "trec", "multi_news", "narrativeqa"} <= set(exs)
    assert any(e.id is None for e in exs["qasper"])
    assert all(e.all_classes for e in exs["trec"])
    for task, task_examples in exs.items():
        assert len({e.key for e in task_examples}) == len(task_examples), task


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared LongBench rows not on this machine")
def test_packaged_config_is_upstream_config() -> None:
    config = lbe.load_task_config()
    for name, got in (("dataset2prompt", config.prompts), ("dataset2maxlen", config.maxlen)):
        upstream = json.loads((SHARED / "config" / f"{name}.json").read_text(encoding="utf-8"))
        assert dict(got) == upstream


def test_prompts_and_chat_template_choice() -> None:
    config = lbe.load_task_config()
    ex = lbe.Example(
        "trec", "k", input="Question: Who?\nType:", context="Q: x\nType: City", answers=("City",)
    )
    assert lbe.build_prompt(ex, config).endswith("Q: x\nType: City\nQuestion: Who?\nType:")
    braces = lbe.Example("qasper", "k", input="q {x}?", context="{context} {}", answers=("a",))
    assert "{context} {}" in lbe.build_prompt(braces, config)  # braces in data are kept as-is
    assert not any(lbe.uses_chat_template(t) for t in ("trec", "triviaqa", "samsum"))
    assert all(lbe.uses_chat_template(t) for t in ("qasper", "hotpotqa", "multi_news"))


def test_pool_cache_round_trip(tmp_path: Path) -> None:
    cache = lb.PoolCache(tmp_path, {"policy_model": "org/Model 1", "n": 2, "reward_models": ["a"]})
    key = cache.entry_key("qasper", "0123abcd", 64)
    assert cache.load(key) is None
    record = {"candidates": [{"text": "x", "mean_logprob": math.nan, "rm_scores": {"a": 1.0}}]}
    cache.store(key, record)
    path = cache.path(key)
    assert path.parent.parent.name == "org_Model_1" and path.name.startswith("0123abcd-")
    loaded = cache.load(key)
    assert loaded["candidates"][0]["mean_logprob"] is None  # strict JSON
    assert not list(path.parent.glob("*.tmp"))
    # Other generation settings are other entries.
    assert cache.load(cache.entry_key("qasper", "0123abcd", 32)) is None
    other = lb.PoolCache(tmp_path, {"policy_model": "org/Model 1", "n": 4, "reward_models": ["a"]})
    assert other.load(other.entry_key("qasper", "0123abcd", 64)) is None


class FakeStub:
    """Answers Rerank like a server with RMs a and b would; records the requests."""

    def __init__(self) -> None:
        self.requests: list = []

    def Rerank(self, req, timeout=None):  # noqa: N802 -- gRPC method name
        from laser_serve.api import pb

        self.requests.append(req)
        n = req.sampling.n
        resp = pb.RerankResponse(chosen_text="greedy answer", truncated=True, context=[0.5, 1.0])
        for j in range(n):
            resp.candidates.add(
                text=f"cand {j}", mean_logprob=-0.5 * j, rm_scores={"a": float(j), "b": -j}
            )
        resp.timings.generate_seconds = 1.5 if n > 1 else 0.5
        resp.timings.rm_seconds["a"] = 0.1
        resp.timings.rm_seconds["b"] = 0.2
        return resp


@pytest.mark.parametrize(("task", "chat"), [("qasper", True), ("triviaqa", False)])
def test_requests_the_bench_sends(task: str, chat: bool) -> None:
    from laser_serve.api import pb

    stub = FakeStub()
    ex = lbe.Example(task, "key", input="Who?", context="ctx", answers=("cand 1",))
    record = lb.fetch_pool_record(
        stub, pb, ex, "PROMPT", n=3, temperature=0.8, max_tokens=16, gen_seed=7,
        rm_names=["a", "b"], task_tag=task, timeout=10,
    )  # fmt: skip
    pooled, greedy = stub.requests
    assert pooled.score_with_all and pooled.return_all_scores and pooled.return_context
    assert pooled.context_text == "Who?" and pooled.task == task
    assert (pooled.sampling.n, pooled.sampling.max_tokens, pooled.sampling.seed) == (3, 16, 7)
    assert pooled.sampling.temperature == pytest.approx(0.8)
    assert (greedy.sampling.n, greedy.sampling.temperature, greedy.policy) == (1, 0.0, "fixed:a")
    for req in (pooled, greedy):
        if chat:
            assert req.prompt == "" and [(m.role, m.content) for m in req.messages] == [
                ("user", "PROMPT")
            ]
        else:
            assert req.prompt == "PROMPT" and not req.messages
    pool = lb.record_to_pool(ex, record, ["a", "b"])
    assert pool.rm_scores == {"a": [0.0, 1.0, 2.0], "b": [0.0, -1.0, -2.0]}
    assert pool.greedy == "greedy answer" and pool.truncated
    assert pool.context == pytest.approx([0.5, 1.0])
    assert pool.rm_seconds == pytest.approx({"a": 0.1, "b": 0.2})
    assert pool.qualities()[1] == 1.0


def test_missing_rm_scores_are_an_error() -> None:
    from laser_serve.api import pb

    stub = FakeStub()
    ex = lbe.Example("qasper", "key", input="q", context="c", answers=("a",))
    with pytest.raises(lb.BenchError, match="score_with_all"):
        lb.fetch_pool_record(
            stub, pb, ex, "P", n=2, temperature=0.8, max_tokens=8, gen_seed=0,
            rm_names=["a", "b", "c"], task_tag="", timeout=10,
        )  # fmt: skip


def test_evaluate_rejects_unknown_methods() -> None:
    args = SimpleNamespace(methods=["rm:zzz"], seed=0, seeds=1, alpha=0.1, train_fraction=0.5)
    with pytest.raises(lb.BenchError, match="unknown method"):
        lb.evaluate(args, {}, ["a"])


def test_max_input_tokens_cuts_the_middle_with_the_policy_tokenizer() -> None:
    from laser_bench.longbench import _prompt_cutter

    cut = _prompt_cutter("builtin:smollm2-135m-instruct", 20)
    text = cut("BEGIN " + "middle " * 200 + "END")
    assert text.startswith("BEGIN") and text.endswith("END") and len(text.split()) < 30
    assert _prompt_cutter("builtin:smollm2-135m-instruct", None)("abc") == "abc"
