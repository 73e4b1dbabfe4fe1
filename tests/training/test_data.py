"""Data loaders and answer extraction."""

import json

import pytest

from laser_serve.errors import ConfigError
from laser_serve.training.data import (
    Example,
    follows_format,
    is_correct,
    load_dataset,
    make_example,
    predicted_answer,
)


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.parametrize(
    ("answer", "gold", "kind"),
    [
        ("Natalia sold 48/2 = 24 clips.\n#### 1,234", "1234", "numeric"),
        ("72", "72", "numeric"),
        (3.50, "3.5", "numeric"),
        (True, "yes", "yesno"),
        (False, "no", "yesno"),
        ("True", "yes", "yesno"),
        ("No", "no", "yesno"),
        ("Paris.", "paris", "text"),
    ],
)
def test_make_example_normalizes_gold_answers(answer, gold, kind):
    ex = make_example("q", answer)
    assert (ex.answer, ex.kind) == (gold, kind)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "numeric", "18"),
        ("#### $1,000.00 dollars", "numeric", "1000"),
        ("So the total is 5 + 7 = 12", "numeric", "12"),  # no ####: the last number
        ("no numbers here", "numeric", None),
        ("Yes, birds fly... Final answer: no", "yesno", "no"),
        ("No. Because ... yes it is", "yesno", "no"),  # no marker: the first yes/no word
        ("Noodles are tasty", "yesno", None),  # whole words only
        ("Thinking...\nFinal answer: Paris.\nDone", "text", "paris"),
        ("Thinking...\nParis", "text", "paris"),
    ],
)
def test_predicted_answer(text, kind, expected):
    assert predicted_answer(text, kind) == expected


def test_is_correct_and_format():
    ex = Example("q", "18", "numeric")
    assert is_correct("... = 18\n#### 18", ex)
    assert not is_correct("#### 17", ex)
    assert follows_format("#### 18", "numeric") and not follows_format("18", "numeric")
    assert follows_format("Final answer: yes", "yesno")
    assert "####" in ex.messages()[0]["content"]  # the prompt asks for the GSM8K ending


def test_gsm8k_layout(tmp_path, monkeypatch):
    _write_jsonl(
        tmp_path / "train.jsonl",
        [{"question": f"q{i}", "answer": f"work\n#### {i}"} for i in range(10)],
    )
    _write_jsonl(
        tmp_path / "test.jsonl",
        [{"question": f"t{i}", "answer": f"#### {i * 2}"} for i in range(5)],
    )
    monkeypatch.setenv("LASER_GSM8K_DIR", str(tmp_path))
    data = load_dataset("gsm8k", eval_size=3, train_size=4, seed=1)
    assert [e.question for e in data.eval] == ["t0", "t1", "t2"]  # the first test rows
    assert [e.answer for e in data.eval] == ["0", "2", "4"]
    assert len(data.train) == 4 and all(e.kind == "numeric" for e in data.train)
    again = load_dataset("gsm8k", str(tmp_path), eval_size=3, train_size=4, seed=1)
    assert again.train == data.train  # seeded


def test_shared_gsm8k_is_found_by_default(monkeypatch):
    monkeypatch.delenv("LASER_GSM8K_DIR", raising=False)
    try:
        data = load_dataset("gsm8k", eval_size=2, train_size=3)
    except ConfigError:
        pytest.skip("no shared GSM8K copy next to this checkout")
    assert len(data.eval) == 2 and data.eval[0].kind == "numeric"


def test_generic_jsonl_holds_out_when_no_test_file(tmp_path):
    _write_jsonl(
        tmp_path / "train.jsonl", [{"prompt": f"p{i}", "answer": str(i)} for i in range(10)]
    )
    data = load_dataset("jsonl", str(tmp_path), eval_size=3)
    assert len(data.eval) == 3 and len(data.train) == 7
    assert not {e.question for e in data.eval} & {e.question for e in data.train}


def test_strategyqa_json_list(tmp_path):
    rows = [
        {"question": "Do fish swim?", "answer": True, "facts": []},
        {"question": "Can rocks fly?", "answer": False},
    ]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    (tmp_path / "dev.json").write_text(json.dumps(rows[:1]))
    data = load_dataset("strategyqa", str(tmp_path))
    assert [(e.answer, e.kind) for e in data.train] == [("yes", "yesno"), ("no", "yesno")]
    assert len(data.eval) == 1


@pytest.mark.parametrize(
    ("name", "setup", "message"),
    [
        ("gsm8k", "missing", "does not exist"),
        ("jsonl", None, "needs --data-dir"),
        ("jsonl", "empty", "no train.jsonl"),
        ("jsonl", "badrow", "needs the fields 'prompt' and 'answer'"),
        ("csv", None, "unknown --data"),
    ],
)
def test_data_errors_say_what_to_do(tmp_path, name, setup, message):
    folder = ""
    if setup == "missing":
        folder = str(tmp_path / "nope")
    elif setup == "empty":
        folder = str(tmp_path)
    elif setup == "badrow":
        _write_jsonl(tmp_path / "train.jsonl", [{"question": "x", "answer": "1"}])
        folder = str(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_dataset(name, folder)
