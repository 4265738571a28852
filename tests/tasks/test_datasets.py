import json

import pytest

from llmnet.errors import DatasetError
from llmnet.tasks.datasets import arithmetic, bilevel, load_dataset, load_dataset_counted


def test_arithmetic_is_seeded_graded_and_true():
    a, b = arithmetic(60, digits=(1, 3), ops=(1, 2), seed=3), arithmetic(60, digits=(1, 3), ops=(1, 2), seed=3)
    assert a == b and a != arithmetic(60, digits=(1, 3), ops=(1, 2), seed=4)
    for q in a:
        nums = [int(x) for x in q.question.split(" + ")]
        assert str(sum(nums)) == q.answer
        assert q.difficulty == q.fields["digits"] + q.fields["operations"] - 1
    assert {q.difficulty for q in a} == {1.0, 2.0, 3.0, 4.0}


def test_bilevel_mix():
    qs = bilevel(1000, alpha=0.3, p1=0.9, p2=0.1)
    assert sum(q.p_correct == 0.9 for q in qs) == 300


def test_dataset_options_and_errors():
    assert len(load_dataset("arithmetic:n=7,digits=2-2")) == 7
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset("arithmetic:colour=red")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("nope")


def test_jsonl_bad_line_named_or_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"id": 1, "question": "a", "answer": "x"}\n{"id": 2, "question": \n'
                     b'{"id": 3, "question": 5}\n\xff\xfe\n[1,2]\n{"id": 6, "question": "b", "answer": 2}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl:2: invalid JSON"):
        load_dataset(str(path))
    qs, bad = load_dataset_counted(str(path), skip_bad=True)
    assert [q.id for q in qs] == ["1", "6"] and bad == 4 and qs[1].answer == "2"


def test_jsonl_fields_choices_and_duplicates(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"id": "a", "question": "q", "answer": "B", "choices": ["x", "y"], "difficulty": 2, "topic": "t"},
            {"id": "a", "question": "q2"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DatasetError, match="duplicate id 'a'"):
        load_dataset(str(path))
    (q,), bad = load_dataset_counted(str(path), skip_bad=True)
    assert q.choices == ("x", "y") and q.difficulty == 2.0 and q.get("topic") == "t" and bad == 1


def test_jsonl_lone_surrogate_escape_is_a_bad_line(tmp_path):
    # JSON allows "\ud800"; UTF-8 cannot store it, so it used to fail later, in the cache.
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "\\ud800", "question": "a", "answer": "1"}\n'
                    '{"id": "ok\\u00e9\\ud83d\\ude00", "question": "b", "answer": "2"}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl:1: a string holds a lone surrogate"):
        load_dataset(str(path))
    qs, bad = load_dataset_counted(str(path), skip_bad=True)
    assert [q.id for q in qs] == ["ok\u00e9\U0001f600"] and bad == 1
