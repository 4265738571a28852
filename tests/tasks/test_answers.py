import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmnet.network.spec import AnswerSpec
from llmnet.tasks.answers import _number, extract, is_correct

NUM = AnswerSpec(kind="number")


@pytest.mark.parametrize("text,expected", [(" 21", "21"), (" 1,234 apples", "1234"), ("so the answer is (42).", "42"),
                                           ("-3.50", "-3.5"), ("none", None), (" 7\nQuestion: 8", "7")])
def test_numbers(text, expected):
    assert extract(NUM, text) == expected


def test_last_position_regex_choice_text():
    assert extract(AnswerSpec(kind="number", position="last"), "3 then 4") == "4"
    assert extract(AnswerSpec(kind="regex", pattern=r"ans=(\w+)"), "x ans=foo y") == "foo"
    assert extract(AnswerSpec(kind="choice"), "I think the answer is (C)") == "C"
    assert extract(AnswerSpec(kind="choice"), "Option B, clearly") == "B"
    assert extract(AnswerSpec(kind="text"), "  Paris.\nmore") == "paris"


def test_correctness():
    assert is_correct(NUM, "21", "21.0") and not is_correct(NUM, "20", "21") and not is_correct(NUM, None, "1")
    assert is_correct(NUM, "1", None) is None
    assert is_correct(AnswerSpec(kind="text"), "paris", "Paris.")


@given(st.from_regex(r"[0-9][0-9,]{0,20}", fullmatch=True) | st.text(max_size=20))
def test_whole_numbers_take_a_short_cut_to_the_same_answer(text):
    """A plain whole number skips float(); it must read exactly as the general path does."""
    raw = text.replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        expected = None
    else:
        finite = not (math.isnan(value) or math.isinf(value))
        expected = (str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)) if finite else None
    assert _number(text) == expected
