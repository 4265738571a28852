import pytest

from llmnet.network.spec import AnswerSpec
from llmnet.tasks.answers import extract, is_correct

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
