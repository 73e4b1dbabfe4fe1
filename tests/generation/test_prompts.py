import pytest

from laser_serve.generation import PromptBuilder, PromptError, truncate_middle
from laser_serve.models import SMOLLM2, policy_tokenizer


def test_truncate_middle_keeps_first_and_last_halves() -> None:
    assert truncate_middle(list(range(10)), 4) == [0, 1, 8, 9]
    assert truncate_middle(list(range(10)), 5) == [0, 1, 7, 8, 9]
    assert truncate_middle([1, 2], 5) == [1, 2]
    with pytest.raises(ValueError):
        truncate_middle([1], 0)


@pytest.fixture(scope="module")
def builder() -> PromptBuilder:
    return PromptBuilder(policy_tokenizer(SMOLLM2), max_model_len=128)


def test_plain_prompt_fits_the_window(builder: PromptBuilder) -> None:
    short = builder.build("Hello there.", None, 16)
    assert not short.truncated and builder.tokenizer.decode(short.token_ids) == "Hello there."
    long = builder.build("START " + "filler " * 500 + " END", None, 16)
    assert long.truncated and len(long.token_ids) == 128 - 16
    assert long.text.startswith("START") and long.text.endswith("END")


def test_chat_prompt_cuts_the_longest_turn(builder: PromptBuilder) -> None:
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "BEGIN " + "word " * 400 + "QUESTION?"},
    ]
    p = builder.build(None, msgs, 16)
    assert p.truncated and len(p.token_ids) <= 112
    assert "Be brief." in p.text and "BEGIN" in p.text and "QUESTION?" in p.text
    assert p.text.rstrip().endswith("assistant")  # generation prompt kept


def test_no_room_for_the_prompt(builder: PromptBuilder) -> None:
    with pytest.raises(PromptError, match="sampling.max_tokens: 120 leaves no room"):
        builder.build("hi", None, 120)
