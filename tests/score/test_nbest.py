"""N-best lists: both layouts, the checks on ids, score tables, and rescoring by hand-computed numbers."""

from __future__ import annotations

import gzip
import io
import math
import re

import pytest

from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.score.nbest import (Hypothesis, NBestList, best_line, combined, format_line, iter_nbest,
                             read_score_table, rescore)


def write(tmp_path, text, name="nbest.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def summary(lists):
    return [(nb.utterance, [(h.rank, h.text, h.acoustic, h.old_lm, h.line) for h in nb.hypotheses])
            for nb in lists]


def test_srilm_with_ids(tmp_path):
    path = write(tmp_path, "u1 -10.5 -3 2 the cat\n"
                           "u1 -11 -2.5 1 cat\n"
                           "\n"
                           "u2 -7 -1e1 0\n"
                           "u2 -inf -4 3 a b c\n")
    lists = list(iter_nbest(path))
    assert summary(lists) == [
        ("u1", [(1, "the cat", -10.5, -3.0, 1), (2, "cat", -11.0, -2.5, 2)]),
        ("u2", [(1, "", -7.0, -10.0, 4), (2, "a b c", -math.inf, -4.0, 5)]),
    ]
    assert lists[1].hypotheses[1].key == "u2-2"
    assert lists[1].hypotheses[1].words == ("a", "b", "c")
    assert summary(iter_nbest(path, "srilm")) == summary(lists)


def test_srilm_without_ids_is_one_list(tmp_path):
    path = write(tmp_path, "-10 -3 2 the cat\n-11 -2 0\n-12 -1 1 u1\n")
    (only,) = list(iter_nbest(path))
    assert summary([only]) == [("1", [(1, "the cat", -10.0, -3.0, 1), (2, "", -11.0, -2.0, 2),
                                      (3, "u1", -12.0, -1.0, 3)])]
    assert only.hypotheses[2].key == "1-3"


def test_srilm_first_line_fitting_both_readings_takes_the_id(tmp_path):
    # With an id: utterance "-5", scores -3 and 3, words "x y". Without: scores -5 and -3, words "2 x y".
    path = write(tmp_path, "-5 -3 3 2 x y\n-5 -1 -2 1 z\n")
    assert summary(iter_nbest(path)) == [("-5", [(1, "x y", -3.0, 3.0, 1), (2, "z", -1.0, -2.0, 2)])]


def test_kaldi_keys_empty_hypotheses_and_no_table(tmp_path):
    path = write(tmp_path, "spk-a-1 hello world\nspk-a-2\nb-1 hi\n")
    lists = list(iter_nbest(path))
    assert summary(lists) == [
        ("spk-a", [(1, "hello world", 0.0, None, 1), (2, "", 0.0, None, 2)]),
        ("b", [(1, "hi", 0.0, None, 3)]),
    ]
    assert summary(iter_nbest(path, "kaldi")) == summary(lists)


def test_kaldi_with_score_table(tmp_path):
    table = read_score_table(write(tmp_path, "a-1 2.302585\n\na-2 4.60517\nb-1 0\n", "costs.txt"))
    assert table == pytest.approx({"a-1": -1.0, "a-2": -2.0, "b-1": 0.0}, abs=1e-6)
    assert math.copysign(1.0, table["b-1"]) == 1.0  # prints as "0", not "-0"
    path = write(tmp_path, "a-1 x\na-2 y\nb-1 z\n")
    acoustic = [h.acoustic for nb in iter_nbest(path, "kaldi", table) for h in nb.hypotheses]
    assert acoustic == pytest.approx([-1.0, -2.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("text, line, words", [
    ("a-1 1 2\n", 1, "expected 'KEY COST', found 3 fields"),
    ("a-1 1\na-2 cheap\n", 2, "not a number"),
    ("a-1 1\na-1 2\n", 2, "duplicate key 'a-1'"),
])
def test_score_table_errors(tmp_path, text, line, words):
    path = write(tmp_path, text, "costs.txt")
    with pytest.raises(DataError, match=f"{re.escape(path)}:{line}: .*{words}"):
        read_score_table(path)


def test_gzip_input(tmp_path):
    path = tmp_path / "nbest.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("a-1 x y\n")
    assert summary(iter_nbest(str(path))) == [("a", [(1, "x y", 0.0, None, 1)])]


def test_stdin_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"-1 -2 1 x\r\n")))
    assert summary(iter_nbest("-")) == [("1", [(1, "x", -1.0, -2.0, 1)])]


def test_lists_come_as_soon_as_they_end(tmp_path):
    path = write(tmp_path, "a-1 x\na-2 y\nb-1 z\nb-7 broken\n")
    lists = iter_nbest(path)
    assert next(lists).utterance == "a"
    with pytest.raises(DataError, match=":4: "):
        next(lists)


# (format, text, line of the error, words the message must hold)
ERRORS = [
    ("auto", "u1 -1 -2 2 a b\nu1 -1 -2 3 a b\n", 2, "NWORDS is 3 but the line has 2 words"),
    ("auto", "-1 -2 1 a\nu -1 -2 1 a\n", 2, "ACOUSTIC 'u' is not a number"),
    ("auto", "u -1 -2 1 a\nu -1 low 1 a\n", 2, "LM 'low' is not a number"),
    ("auto", "u -1 -2 1 a\nu -1 -2 one a\n", 2, "NWORDS 'one' is not a count"),
    ("auto", "u -1 -2 1 a\nu -1 -2\n", 2, "found 3 fields"),
    ("auto", "u -1 -2 1 a\nu -1 nan 1 a\n", 2, "not a number"),
    ("auto", "a -1 -2 0\nb -1 -2 0\na -1 -2 0\n", 3, "utterance 'a' comes back after 'b' started"),
    ("auto", "a-1 x\na-1 y\n", 2, "duplicate key 'a-1' \\(also on line 1\\)"),
    ("auto", "a-1 x\na-3 y\n", 2, "expected 'a-2', found 'a-3'"),
    ("auto", "a-1 x\nb-2 y\n", 2, "expected 'b-1', found 'b-2'"),
    ("auto", "a-1 x\nb-1 y\na-2 z\n", 3, "utterance 'a' comes back after 'b' started"),
    ("auto", "a-1 x\nb-01 y\n", 2, "'b-01' is not UTT-N"),
    ("kaldi", "\nhello world\n", 2, "expected Kaldi 'UTT-N w1 ... wN'"),
    ("kaldi", "-1 x\n", 1, "expected Kaldi"),
    ("srilm", "a-1 x\n", 1, "expected SRILM 'UTT ACOUSTIC LM NWORDS w1 ... wN'"),
    ("auto", "hello world\n", 1, "expected SRILM .* or Kaldi"),
    ("auto", "u -1 -2 3 a b\n", 1, "expected SRILM"),
]


@pytest.mark.parametrize("fmt, text, line, words", ERRORS)
def test_errors_name_the_line(tmp_path, fmt, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=f"{re.escape(path)}:{line}: .*{words}"):
        list(iter_nbest(path, fmt))


def test_score_table_must_cover_the_list_and_nothing_more(tmp_path):
    path = write(tmp_path, "a-1 x\na-2 y\n")
    with pytest.raises(DataError, match=f"{re.escape(path)}:2: no acoustic score for 'a-2'"):
        list(iter_nbest(path, "kaldi", {"a-1": -1.0}))
    with pytest.raises(DataError, match=f"{re.escape(path)}: 2 score table entries match no hypothesis \\(first: 'c-1'\\)"):
        list(iter_nbest(path, "kaldi", {"a-1": -1.0, "c-1": -1.0, "a-2": -1.0, "a-3": -1.0}))


def test_bad_arguments_fail_at_the_call(tmp_path):
    path = write(tmp_path, "u -1 -2 1 a\n")
    with pytest.raises(UsageError, match="unknown n-best format 'moses'"):
        iter_nbest(path, "moses")
    with pytest.raises(UsageError, match="Kaldi"):
        iter_nbest(path, "srilm", {})
    with pytest.raises(UsageError, match=f"{re.escape(path)}:1: .*Kaldi"):
        list(iter_nbest(path, "auto", {}))


def test_combined_by_hand():
    # -100 + 10 * -20 + 0.5 * 4
    assert combined(-100.0, -20.0, 10.0, 0.5, 4) == -298.0
    assert combined(-100.0, -20.0, 10.0) == -300.0
    assert combined(-3.0, -math.inf, 0.0, 1.0, 2) == -1.0


def hyp(rank, words, acoustic, utterance="u", line=1):
    return Hypothesis(utterance, rank, tuple(words.split()), acoustic, None, line)


def test_format_line():
    assert format_line(hyp(2, "a b", -1.5), -3.25, -34.0) == "u-2 -34 -1.5 -3.25 2 a b"
    assert format_line(hyp(1, "", 0.0), -1234567.8, -math.inf) == "u-1 -inf 0 -1.23457e+06 0"
    assert format_line(hyp(3, "x", -0.0), -0.1, 1 / 3) == "u-3 0.333333 0 -0.1 1 x"


def test_rescore_by_hand_sorted_and_unsorted():
    nbest = NBestList("u", [hyp(1, "a b", -10.0), hyp(2, "c", -12.0), hyp(3, "d e f", -9.0), hyp(4, "g", -13.0)])
    lm = {"a b": -3.0, "c": -1.0, "d e f": -4.0, "g": -0.5}
    calls = []

    def score_text(texts):
        calls.append(texts)
        return [lm[text] for text in texts]

    # total = acoustic + 2 * lm - 0.5 * words
    expected = [(1, -3.0, -17.0), (2, -1.0, -14.5), (3, -4.0, -18.5), (4, -0.5, -14.5)]
    (got_list, rows), = rescore([nbest], score_text, 2.0, -0.5, sort=False)
    assert got_list is nbest
    assert [(h.rank, lm_score, total) for h, lm_score, total in rows] == expected
    assert calls == [["a b", "c", "d e f", "g"]]

    (_, rows), = rescore([nbest], score_text, 2.0, -0.5, sort=True)
    assert [h.rank for h, _, _ in rows] == [2, 4, 1, 3]  # 2 and 4 tie at -14.5: lower rank first
    assert best_line(nbest, rows) == "u c"
    assert best_line(nbest, list(reversed(rows))) == "u c"
    assert len(calls) == 2


def test_rescore_scores_each_distinct_text_once():
    nbest = NBestList("u", [hyp(1, "a b", -1.0), hyp(2, "c", -1.0), hyp(3, "a b", -2.0), hyp(4, "c", -1.5)])
    calls = []

    def by_position(texts):
        # A duplicate passed twice would get two different scores.
        calls.append(texts)
        return [-float(i + 1) for i in range(len(texts))]

    (_, rows), = rescore([nbest], by_position, 1.0, 0.0, sort=False)
    assert calls == [["a b", "c"]]
    assert [lm for _, lm, _ in rows] == [-1.0, -2.0, -1.0, -2.0]
    assert [total for _, _, total in rows] == [-2.0, -3.0, -3.0, -3.5]


def test_rescore_calls_once_per_list_in_order(tmp_path):
    path = write(tmp_path, "a-1 x\na-2 y\nb-1\n")
    calls = []

    def score_text(texts):
        calls.append(texts)
        return [-1.0] * len(texts)

    results = list(rescore(iter_nbest(path), score_text, 1.0, 0.0, sort=True))
    assert calls == [["x", "y"], [""]]
    assert [best_line(nb, rows) for nb, rows in results] == ["a x", "b"]


def test_rescore_refuses_a_short_answer():
    with pytest.raises(ValueError, match="1 scores for 2 texts"):
        list(rescore([NBestList("u", [hyp(1, "a", 0.0), hyp(2, "b", 0.0)])], lambda texts: [0.0], 1.0, 0.0, False))
