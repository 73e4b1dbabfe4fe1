"""LongBench data loading and keying, prompts, and the rows the bench builds pools for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
    assert bench_main(["longbench"]) == 2
    err = capsys.readouterr().err
    assert "no LongBench data in" in err and str(tmp_path / "empty") in err
    assert "Traceback" not in err


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["longbench", "--n", "0"]) == 2
    assert "--n, --seeds and --concurrency must be at least 1" in capsys.readouterr().err
    assert bench_main(["longbench", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


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


def test_replay_rows_use_the_official_prompt_and_length() -> None:
    config = lbe.load_task_config()
    examples = {
        "qasper": [lbe.Example("qasper", "k1", input="Who?", context="ctx", answers=("x",))],
        "triviaqa": [lbe.Example("triviaqa", "k2", input="Q", context="C", answers=("y",))],
    }
    qasper, trivia = lbe.replay_rows(examples, config, max_new_tokens=16)
    assert qasper.prompt == lbe.build_prompt(examples["qasper"][0], config)
    assert qasper.chat and qasper.messages == [{"role": "user", "content": qasper.prompt}]
    assert not trivia.chat and trivia.messages is None  # few-shot tasks go without the template
    assert qasper.question == "Who?" and qasper.answers == ("x",)
    assert qasper.max_new_tokens == 16 and trivia.max_new_tokens == 16  # capped
    assert lbe.replay_rows(examples, config, None)[0].max_new_tokens == config.maxlen["qasper"]
