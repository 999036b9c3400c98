"""`eval FILE`'s layouts as one registry: which the flags choose, and what each writes.

The words are built by hand with round log10 scores, so every expected line is written out
from the layouts' definitions (SRILM's six significant digits, KenLM's `word=ID ORDER log10`).
"""

from __future__ import annotations

import io
import json

import pytest

from rnnlm_cli.score.eval_request import EvalRequest
from rnnlm_cli.score.evaluate import EvalResult
from rnnlm_cli.score.text_outputs import TEXT_OUTPUTS
from rnnlm_cli.score.word_scoring import WordScore

LINE = [WordScore("the", -1.0), WordScore("dog", -2.0), WordScore("</s>", -0.5, ends_line=True)]


class Flushes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue()))


def scored(layout: str, ids=None):
    out = Flushes()
    output = TEXT_OUTPUTS[layout](out, ids)
    if output.wants_words:
        output.on_words("the dog", LINE, True)
    output.on_sentence(1, -3.5)
    result = EvalResult(file="t.txt")
    result.add(LINE)
    return out, output.summary(result, "t.txt")


@pytest.mark.parametrize("options, layout", [
    ({}, "srilm"), ({"debug": 1}, "debug"), ({"debug": 2}, "debug-words"), ({"json_output": True}, "json"),
    ({"per_sentence": True}, "per-sentence"), ({"query": True}, "query"),
    ({"query": True, "per_sentence": True}, "query-scores"), ({"query": True, "query_format": "kenlm"}, "kenlm"),
])
def test_the_flags_choose_one_layout_of_the_registry(options, layout):
    assert EvalRequest(model="m.pt", file="t.txt", **options).text_output == layout
    assert layout in TEXT_OUTPUTS


def test_a_query_answers_each_line_at_once_and_logs_the_totals():
    out, summary = scored("query")
    assert out.getvalue() == "the=-1\tdog=-2\t</s>=-0.5\tTotal: -3.5 OOV: 0\n"
    assert out.flushed_at == [len(out.getvalue())]  # flushed as soon as the line was written
    assert summary.stdout == [] and summary.log[0].startswith("file t.txt: ")


def test_kenlm_layout_prints_ids_orders_and_its_own_summary():
    out, summary = scored("kenlm", {"the": 3, "dog": 7, "</s>": 0})
    assert out.getvalue() == "the=3 2 -1\tdog=7 3 -2\t</s>=0 4 -0.5\tTotal: -3.5 OOV: 0\n"
    assert summary.stdout[0] == f"Perplexity including OOVs:\t{10 ** (3.5 / 3):.6g}" and summary.log == []


def test_per_sentence_writes_only_the_scores():
    out, summary = scored("per-sentence")
    assert out.getvalue() == "-3.500000\n" and summary.stdout == summary.log == []


def test_json_and_srilm_summaries_are_the_totals():
    _, summary = scored("json")
    assert json.loads(summary.stdout[0])["file"] == "t.txt"
    _, summary = scored("srilm")
    assert summary.stdout[0].startswith("file t.txt: ") and len(summary.stdout) == 2


def test_debug_words_shows_each_words_probability():
    out, _ = scored("debug-words")
    lines = out.getvalue().splitlines()
    assert lines[0] == "the dog" and lines[1] == "\tp( the | <s> ) \t= [2gram] 0.1 [ -1 ]"
