"""SRILM's ``-ppl -debug`` lines and KenLM-style query lines, compared with text written out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from rnnlm_cli.score.formats import KenlmTotals, WordLines, kenlm_entries, number, query_entries, query_total, totals_lines
from rnnlm_cli.score.word_scoring import WordScore


@pytest.mark.parametrize("value, text", [
    (0.0123456789, "0.0123457"),
    (-1.908486, "-1.90849"),
    (-0.5, "-0.5"),
    (14.8, "14.8"),
    (123456789.0, "1.23457e+08"),
    (0.0, "0"),
    (-math.inf, "-inf"),
    (math.inf, "inf"),
    (math.nan, "undefined"),
])
def test_numbers_have_six_significant_digits(value, text):
    assert number(value) == text


def test_totals_lines_as_srilm_prints_them():
    # 1 sentence of 3 words, none OOV: ppl over 4 predictions, ppl1 over 3.
    logprob = -4.68
    totals = SimpleNamespace(sentences=1, words=3, oovs=0, zeroprobs=0, logprob=logprob,
                             ppl=10 ** (4.68 / 4), ppl1=10 ** (4.68 / 3))
    assert totals_lines(totals) == [
        "1 sentences, 3 words, 0 OOVs",
        "0 zeroprobs, logprob= -4.68 ppl= 14.7911 ppl1= 36.3078",
    ]
    assert totals_lines(totals, name="test.txt") == [
        "file test.txt: 1 sentences, 3 words, 0 OOVs",
        "0 zeroprobs, logprob= -4.68 ppl= 14.7911 ppl1= 36.3078",
    ]


def test_totals_of_nothing_print_undefined():
    totals = SimpleNamespace(sentences=0, words=2, oovs=2, zeroprobs=0, logprob=0.0, ppl=math.nan, ppl1=math.nan)
    assert totals_lines(totals)[1] == "0 zeroprobs, logprob= 0 ppl= undefined ppl1= undefined"


def line_words():
    return [
        WordScore("the", -1.908486),
        WordScore("cat", math.log10(0.0513)),
        WordScore("zebra", -math.inf, oov=True),
        WordScore("</s>", math.log10(0.31), ends_line=True),
    ]


def test_debug_2_word_lines():
    assert WordLines().lines(line_words()) == [
        "\tp( the | <s> ) \t= [2gram] 0.0123457 [ -1.90849 ]",
        "\tp( cat | the ...) \t= [3gram] 0.0513 [ -1.28988 ]",
        "\tp( zebra | cat ...) \t= [OOV] 0 [ -inf ]",
        "\tp( </s> | zebra ...) \t= [5gram] 0.31 [ -0.508638 ]",
    ]


def test_word_lines_carry_the_previous_word_across_pieces_and_restart_at_a_line_end():
    lines = WordLines()
    first = lines.lines([WordScore("a", -1.0)])
    second = lines.lines([WordScore("b", -2.0), WordScore("</s>", -0.5, ends_line=True)])
    third = lines.lines([WordScore("c", -3.0)])
    # The tag's order also carries across pieces, and restarts at 2 with the next line.
    assert first == ["\tp( a | <s> ) \t= [2gram] 0.1 [ -1 ]"]
    assert second == ["\tp( b | a ...) \t= [3gram] 0.01 [ -2 ]", "\tp( </s> | b ...) \t= [4gram] 0.316228 [ -0.5 ]"]
    assert third == ["\tp( c | <s> ) \t= [2gram] 0.001 [ -3 ]"]


def test_query_line_parts():
    words = line_words()
    assert query_entries(words) == ["the=-1.90849", "cat=-1.28988", "zebra=OOV", "</s>=-0.508638"]
    # -1.908486 - 1.289883 - 0.508638 = -3.707007: the OOV is left out of the total.
    totals = SimpleNamespace(logprob=-1.908486 + math.log10(0.0513) + math.log10(0.31), oovs=1)
    assert query_total(totals, words) == "Total: -3.70701 OOV: 1"
    # Scored as <unk> (--unk), the word outside the vocabulary still counts as an OOV.
    as_unk = [WordScore("zebra", -3.0, unknown=True), WordScore("</s>", -0.5, ends_line=True)]
    assert query_entries(as_unk) == ["zebra=-3", "</s>=-0.5"]
    assert query_total(SimpleNamespace(logprob=-3.5, oovs=0), as_unk) == "Total: -3.5 OOV: 1"


def test_kenlm_layout_of_a_line_and_its_summary():
    ids = {"the": 7, "cat": 9, "</s>": 0}
    words = [WordScore("the", -1.0), WordScore("cat", -2.0), WordScore("zebra", -3.0, unknown=True),
             WordScore("</s>", -0.5, ends_line=True)]
    assert kenlm_entries(words, ids.__getitem__) == ["the=7 2 -1", "cat=9 3 -2", "zebra=0 1 -3", "</s>=0 5 -0.5"]
    totals = KenlmTotals()
    assert totals.add(words) == "Total: -6.5 OOV: 1"
    assert totals.add([WordScore("the", -1.5), WordScore("</s>", -0.5, ends_line=True)]) == "Total: -2 OOV: 0"
    # 6 tokens, log10 total -8.5; without the OOV: 5 tokens, -5.5.
    assert totals.summary() == [f"Perplexity including OOVs:\t{10 ** (8.5 / 6):.6g}",
                                f"Perplexity excluding OOVs:\t{10 ** (5.5 / 5):.6g}", "OOVs:\t1", "Tokens:\t6"]
