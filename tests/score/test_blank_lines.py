"""Blank lines in ``rnnlm eval``: skipped in the sentence context as SRILM's ``ngram -ppl`` skips
them (``File::getline`` drops a line of only whitespace), predicted line ends in the stream
context, and answered in every layout of one answer per input line.

The expected figures are independent of the scoring code: counts by hand, the same text
without its blank lines, and one plain forward pass over the stream."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import cli
from rnnlm_cli.score.token_scoring import PieceEncoder

BLANKS = ["", "   \t"]
"""The blank lines put between the two text lines: an empty one and one of spaces and a tab."""


def ok(*args):
    result = cli("eval", *args, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def texts(toy, tmp_path):
    """Two lines of the toy model's test text with blank lines between (``blank``), the same two
    lines alone (``plain``), and the two lines' word counts."""
    first, second = toy["test_lines"][:2]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n".join([first, *BLANKS, second]) + "\n", encoding="utf-8")
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{first}\n{second}\n", encoding="utf-8")
    return {"blank": blank, "plain": plain, "lines": [first, *BLANKS, second],
            "words": len(first.split()) + len(second.split())}


def report(model, path, *extra) -> dict:
    return json.loads(ok(model, path, "--json", *extra).stdout)


@pytest.mark.parametrize("extra", [(), ("--cache", "10")], ids=["batched", "cache"])
def test_the_sentence_context_skips_blank_lines_as_srilm(toy, texts, extra):
    blank = report(toy["model"], texts["blank"], "--context", "sentence", *extra)
    plain = report(toy["model"], texts["plain"], "--context", "sentence", *extra)
    assert (blank["sentences"], blank["words"], blank["oovs"]) == (2, texts["words"], 0)
    # Nothing of the blank lines is scored: the totals are the text's without them, exactly.
    for key in ("logprob", "ppl", "ppl1", "tokens"):
        assert blank[key] == plain[key], key
    assert blank["tokens"] == texts["words"] + 2  # a word model: one token per word, and two line ends


@pytest.mark.parametrize("level", ["1", "2"])
def test_debug_prints_no_block_for_a_skipped_blank_line(toy, texts, level):
    blank = ok(toy["model"], texts["blank"], "--context", "sentence", "--debug", level).stdout
    plain = ok(toy["model"], texts["plain"], "--context", "sentence", "--debug", level).stdout
    assert blank == plain.replace(str(texts["plain"]), str(texts["blank"]))
    assert blank.count(" sentences, ") == 3  # two blocks and the file's totals
    assert "p( </s> | <s> )" not in blank
    if level == "2":  # a p( ) line per word and per line end of the two text lines
        assert blank.count("\tp( ") == texts["words"] + 2


@torch.no_grad()
def stream_logprob(model_path, lines: list[str]) -> float:
    """log10 P of ``lines`` as one stream, every line end predicted: one plain forward pass."""
    from rnnlm_cli.store.checkpoint import load_model

    model, tokenizer, _ = load_model(str(model_path), torch.device("cpu"))
    targets = [token for line in lines for token in [*tokenizer.encode(line), tokenizer.eos_id]]
    inputs = torch.tensor([tokenizer.eos_id, *targets[:-1]]).unsqueeze(1)  # (T, 1)
    logp = torch.log_softmax(model.eval()(inputs)[0][:, 0].double(), -1)  # (T, V)
    return float(logp[torch.arange(len(targets)), torch.tensor(targets)].sum()) / math.log(10)


def test_the_stream_context_predicts_a_blank_lines_end(toy, texts):
    scored = report(toy["model"], texts["blank"])
    assert (scored["sentences"], scored["words"], scored["oovs"]) == (4, texts["words"], 0)
    assert scored["logprob"] == pytest.approx(stream_logprob(toy["model"], texts["lines"]), abs=1e-4)
    # Its debug block stays: the </s> was predicted, and counted.
    debug = ok(toy["model"], texts["blank"], "--debug", "2").stdout
    assert debug.count("\tp( </s> | <s> ) ") == len(BLANKS)
    assert debug.count("1 sentences, 0 words, 0 OOVs\n") == len(BLANKS)


@pytest.mark.parametrize("layout", [("--context", "sentence", "--per-sentence"), ("--query",),
                                    ("--query", "--per-sentence"), ("--query", "--context", "stream"),
                                    ("--query", "--format", "kenlm")])
def test_per_line_layouts_answer_every_input_line(toy, texts, layout):
    answers = ok(toy["model"], texts["blank"], *layout).stdout.splitlines()
    if "kenlm" in layout:  # then KenLM's summary, every line end a token, the blank lines' too
        assert answers[-1] == f"Tokens:\t{texts['words'] + 4}"
        answers = answers[:-4]
    assert len(answers) == 4
    if "--per-sentence" in layout:
        plain = ok(toy["model"], texts["plain"], *layout).stdout.splitlines()
        assert [answers[0], answers[3]] == plain
        assert answers[1] == answers[2] and float(answers[1]) < 0  # each the sentence </s>, alone
    else:  # a field per word, </s> and the line's total; a blank line's only </s> and its total
        assert [len(line.split("\t")) for line in answers] == [len(line.split()) + 2 for line in texts["lines"]]
        assert answers[1].startswith("</s>=") and answers[2].startswith("</s>=")


def test_a_text_of_blank_lines_only_has_nothing_to_score_in_the_sentence_context(toy, tmp_path):
    text = tmp_path / "blank.txt"
    text.write_text("\n \t\n\n", encoding="utf-8")
    assert report(toy["model"], text)["sentences"] == 3
    result = cli("eval", toy["model"], text, "--context", "sentence", "--device", "cpu")
    assert result.exit_code == 65
    assert "only blank lines" in result.stderr


def test_a_blank_line_is_one_of_only_c_whitespace_however_it_is_read(word_tokenizer):
    encoder = PieceEncoder(word_tokenizer)
    segments = [("dog", True), ("", True), (" \t\f\v\r", True),
                ("  ", False), ("\t", True),  # a blank line longer than the read limit, in pieces
                (" ", False), ("dog", False), (" ", True),  # a line that starts blank, then is not
                ("\u00a0", True)]  # no-break space: not isspace() in the C locale, SRILM keeps it
    pieces = [(piece.text, piece.last) for piece in encoder.pieces(segments, skip_blank_lines=True)]
    assert pieces == [("dog", True), (" ", False), ("dog", False), (" ", True), ("\u00a0", True)]
    assert encoder.counts.blank_lines == 3
