"""LongBench metrics against cases worked by hand from THUDM/LongBench metrics.py / eval.py."""

from __future__ import annotations

import pytest
from laser_bench import longbench_eval as lbe

TREC_CLASSES = (
    "Food",
    "Date",
    "City",
    "Country",
    "Individual",
    "Other location",
    "Description of something",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat, sat on a mat!", "cat sat on mat"),
        ("An apple; AN Orange", "apple orange"),
        ("Theatre another", "theatre another"),  # articles only as whole words
        ("a.b. the-end", "ab theend"),  # punctuation goes before articles are matched
        ("  \n\t ", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert lbe.normalize_answer(text) == expected


def test_qa_f1_hand_worked() -> None:
    # pred tokens [eiffel, tower, in, paris], gold [eiffel, tower]: P=2/4, R=1, F1=2/3.
    assert lbe.qa_f1_score("The Eiffel Tower, in Paris.", "the Eiffel tower") == pytest.approx(
        2 / 3
    )
    # Token multisets: "paris paris" vs "paris" shares one token: P=1/2, R=1.
    assert lbe.qa_f1_score("Paris Paris", "Paris") == pytest.approx(2 / 3)
    assert lbe.qa_f1_score("London", "Paris") == 0.0
    assert lbe.qa_f1_score("", "Paris") == 0.0
    assert lbe.qa_f1_score("The answer", "an answer") == 1.0


def test_score_is_max_over_answers() -> None:
    # "fifty-five" normalizes to "fiftyfive" on both sides.
    assert lbe.score_prediction("triviaqa", "fifty-five", ["55", "fifty-five"]) == 1.0
    assert lbe.score_prediction("hotpotqa", "University of Toronto", ["UT", "Toronto"]) == (
        pytest.approx(0.5)
    )


def test_first_line_cut_only_on_few_shot_tasks() -> None:
    pred = "\n\nParis\nParis is the capital"
    # triviaqa scores the first non-empty line only: "Paris".
    assert lbe.score_prediction("triviaqa", pred, ["Paris"]) == 1.0
    # qasper keeps the whole text: [paris, paris, is, capital] vs [paris]: P=1/4, R=1, F1=0.4.
    assert lbe.score_prediction("qasper", pred, ["Paris"]) == pytest.approx(0.4)
    # lstrip('\n') only strips newlines: a leading space line stays the first line.
    assert lbe.score_prediction("triviaqa", " \nParis", ["Paris"]) == 0.0


def test_classification_score_rules() -> None:
    assert lbe.classification_score("City", "City", TREC_CLASSES) == 1.0
    # Two classes occur in the prediction, the gold is one of them: 1/2.
    assert lbe.classification_score("Country or City", "City", TREC_CLASSES) == 0.5
    assert lbe.classification_score("Country", "City", TREC_CLASSES) == 0.0
    assert lbe.classification_score("no idea", "City", TREC_CLASSES) == 0.0
    # A match that is a strict substring of the gold class is dropped: "Other" for
    # "Other location" leaves one match.
    classes = ("Other", "Other location", "Date")
    assert lbe.classification_score("Other location", "Other location", classes) == 1.0
    # Without the rule the gold would share credit with "Other".
    assert lbe.classification_score("Other location", "Other", classes) == 0.5


def test_classification_reproduces_upstream_iteration_quirk() -> None:
    # Upstream removes from the list it iterates: after dropping "Oth" the loop skips "Other",
    # which stays although it is a substring of the gold too; the score is 1/2, not 1.
    classes = ("Oth", "Other", "Other location")
    assert lbe.classification_score("Other location", "Other location", classes) == 0.5


def test_trec_uses_first_line() -> None:
    pred = "Individual\nType: City"
    assert lbe.score_prediction("trec", pred, ["Individual"], TREC_CLASSES) == 1.0
    assert lbe.score_prediction("trec", pred, ["City"], TREC_CLASSES) == 0.0


def test_rouge_l_hand_worked() -> None:
    # LCS of [the cat sat on the mat] and [the cat lay on the mat] is 5 tokens: P=R=F=5/6.
    pred, gold = "the cat sat on the mat", "the cat lay on the mat"
    assert lbe.rouge_l_score(pred, gold) == pytest.approx(5 / 6)
    # [police killed the gunman] vs [the gunman was killed by police]: LCS 2 ("the gunman"),
    # P=2/4, R=2/6, F=2PR/(P+R)=0.4.
    assert lbe.rouge_l_score("police killed the gunman", "the gunman was killed by police") == (
        pytest.approx(0.4)
    )
    # Case and punctuation do not count; empty text scores 0.
    assert lbe.rouge_l_score("The cat.", "the cat") == pytest.approx(1.0)
    assert lbe.rouge_l_score("", "the cat") == 0.0


def test_summarization_and_samsum_use_rouge() -> None:
    gold = ["Mia and Steven meet at 8 for Chinese."]
    pred = "Mia and Steven meet at 8 for Chinese.\nDialogue: more text"
    assert lbe.score_prediction("samsum", pred, gold) == pytest.approx(1.0)  # first line only
    assert lbe.score_prediction("multi_news", pred, gold) < 1.0  # whole text
    for task in ("gov_report", "qmsum", "multi_news", "samsum"):
        assert lbe.TASK_METRIC[task] == "rouge_l"


def test_every_task_has_metric_prompt_and_maxlen() -> None:
    config = lbe.load_task_config()
    for task in lbe.TASKS:
        assert task in lbe.TASK_METRIC
        assert "{context}" in config.prompts[task]
        assert config.maxlen[task] > 0
    assert config.maxlen["hotpotqa"] == 32 and config.maxlen["gov_report"] == 512
