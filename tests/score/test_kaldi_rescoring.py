"""Kaldi's n-best routes through ``rnnlm eval --nbest``: --output sentence-scores (with --cost),
--output token-scores, --symbols and --carry-state best. Expected numbers come from the
model's own per-sentence scores (``--context sentence --per-sentence --unk``) or from plain
forward passes (eval_support.token_logprobs)."""

from __future__ import annotations

import math

import pytest

from conftest import tiny_model
from eval_support import V, WORDS, ok, run, token_logprobs, usage_error, write
# Fixtures are found by name in the test module, the ones they request among them.
from eval_support import random_lm, uniform_lm, word_tok  # noqa: F401

LN10 = math.log(10)
# "zebra" is outside the model's vocabulary; u1-3 is an empty hypothesis.
KALDI_NBEST = ("u1-1 the dog runs\n"
               "u1-2 the cat zebra\n"
               "u1-3\n"
               "u2-1 cat runs .\n"
               "u2-2 the dog runs\n")
KEYS = ["u1-1", "u1-2", "u1-3", "u2-1", "u2-2"]
TEXTS = ["the dog runs", "the cat zebra", "", "cat runs .", "the dog runs"]


def ids(text: str) -> list[int]:
    return [WORDS.index(word) if word in WORDS else 1 for word in text.split()]


def per_sentence(model, tmp_path, texts: list[str]) -> list[float]:
    """Each text's log10 score from ``rnnlm eval --context sentence --per-sentence --unk``."""
    source = write(tmp_path / "texts.txt", "".join(text + "\n" for text in texts))
    return [float(x) for x in ok(model, source, "--context", "sentence", "--per-sentence", "--unk").stdout.split()]


def test_sentence_scores_are_the_models_log10_scores_in_input_order(random_lm, tmp_path):
    nbest = write(tmp_path / "text", KALDI_NBEST)
    expected = per_sentence(random_lm, tmp_path, TEXTS)
    out = ok(random_lm, "--nbest", nbest, "--nbest-format", "kaldi", "--output", "sentence-scores").stdout
    lines = out.splitlines()
    assert len(lines) == len(TEXTS) and all(len(line.split()) == 1 for line in lines)
    assert [float(line) for line in lines] == pytest.approx(expected, abs=2e-6)
    # And against a plain forward pass: each hypothesis from a fresh state, zebra as <unk>.
    by_hand = [sum(lp) / LN10 for lp in token_logprobs(tiny_model(V, seed=5), [ids(t) for t in TEXTS], carry=False)]
    assert [float(line) for line in lines] == pytest.approx(by_hand, abs=2e-6)
    assert all(x < 0 for x in by_hand)


def test_cost_is_the_negated_natural_log(random_lm, tmp_path):
    nbest = write(tmp_path / "text", KALDI_NBEST)
    log10 = [float(x) for x in ok(random_lm, "--nbest", nbest, "--output", "sentence-scores").stdout.split()]
    out = ok(random_lm, "--nbest", nbest, "--output", "sentence-scores", "--cost").stdout
    rows = [line.split(" ") for line in out.splitlines()]
    assert [row[0] for row in rows] == KEYS and all(len(row) == 2 for row in rows)
    assert [float(row[1]) for row in rows] == pytest.approx([-x * 2.302585092994046 for x in log10], abs=2e-5)
    # The same text in two lists, the second time beside another hypothesis, costs the same.
    assert rows[0][1] == rows[4][1]


def test_token_scores_sum_to_the_sentence_cost(random_lm, tmp_path):
    nbest = write(tmp_path / "text", KALDI_NBEST)
    costs = ok(random_lm, "--nbest", nbest, "--output", "sentence-scores", "--cost").stdout.splitlines()
    out = ok(random_lm, "--nbest", nbest, "--output", "token-scores").stdout
    rows = [line.split(" ") for line in out.splitlines()]
    assert [row[0] for row in rows] == KEYS
    forward = token_logprobs(tiny_model(V, seed=5), [ids(t) for t in TEXTS], carry=False)
    for row, text, cost_line, by_hand in zip(rows, TEXTS, costs, forward):
        values = row[1:]
        assert len(values) == len(text.split()) + 1  # the words, then the sentence end
        assert all(len(v.split(".")[1]) == 4 for v in values)
        assert [float(v) for v in values] == pytest.approx([-lp for lp in by_hand], abs=6e-5)
        assert sum(map(float, values)) == pytest.approx(float(cost_line.split()[1]), abs=1e-4 * len(values))


def test_uniform_token_costs_are_ln_v(uniform_lm, tmp_path):
    nbest = write(tmp_path / "text", "a-1 the dog\n")
    out = ok(uniform_lm, "--nbest", nbest, "--output", "token-scores").stdout
    assert out == "a-1 " + " ".join([f"{math.log(V):.4f}"] * 3) + "\n"


def test_symbols_map_ids_to_words_and_drop_non_words(random_lm, tmp_path):
    table = write(tmp_path / "words.txt", "<eps> 0\nthe 1\ndog 2\nruns 3\ncat 4\nzebra 5\n<s> 6\n</s> 7\n#0 8\n")
    by_ids = write(tmp_path / "text.ids", "u1-1 1 2 3\nu1-2 6 1 4 5 7\nu1-3 0 8\n")
    by_words = write(tmp_path / "text.words", "u1-1 the dog runs\nu1-2 the cat zebra\nu1-3\n")
    for output in ("token-scores", "sentence-scores"):
        mapped = ok(random_lm, "--nbest", by_ids, "--symbols", table, "--output", output).stdout
        assert mapped == ok(random_lm, "--nbest", by_words, "--output", output).stdout
    rescored = ok(random_lm, "--nbest", by_ids, "--symbols", table).stdout
    assert [line.split()[-1] for line in rescored.splitlines()] == ["runs", "zebra", "0"]


@pytest.mark.parametrize("hyps,table,code,where", [
    ("u1-1 1 9\n", "the 1\n", 65, "text.ids:1"),
    ("u1-1 the\n", "the 1\n", 65, "text.ids:1"),
    ("u1-1 1\n", "the 1\ndog 1\n", 65, "words.txt:2"),
    ("u1-1 1\n", "the one\n", 65, "words.txt:1"),
])
def test_bad_ids_and_tables_are_bad_data_naming_the_line(uniform_lm, tmp_path, hyps, table, code, where):
    result = run(uniform_lm, "--nbest", write(tmp_path / "text.ids", hyps), "--symbols",
                 write(tmp_path / "words.txt", table), "--output", "token-scores")
    assert result.exit_code == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and where in lines[0], result.stderr


def test_a_missing_symbol_table_is_missing_input(uniform_lm, tmp_path):
    result = run(uniform_lm, "--nbest", write(tmp_path / "t", "u-1 the\n"), "--symbols", tmp_path / "no.txt")
    assert result.exit_code == 66, result.stderr


def carried(model, previous: list[list[int]], hypothesis: list[int]) -> list[float]:
    """Natural-log scores of ``hypothesis`` and its end read after ``previous`` sentences, one forward pass."""
    return token_logprobs(model, [*previous, hypothesis], carry=True)[-1]


def test_carry_state_best_continues_from_the_previous_best(random_lm, tmp_path):
    model = tiny_model(V, seed=5)
    nbest = write(tmp_path / "text", "a-1 the dog runs\na-2 the cat\nb-1 cat runs .\nb-2 the dog\nc-1 dog\n")
    out = ok(random_lm, "--nbest", nbest, "--output", "token-scores", "--carry-state", "best").stdout
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out.splitlines()}
    # The first utterance starts fresh; without acoustic scores "best" is rank 1.
    assert rows["a-1"] == pytest.approx([-x for x in carried(model, [], ids("the dog runs"))], abs=6e-5)
    assert rows["a-2"] == pytest.approx([-x for x in carried(model, [], ids("the cat"))], abs=6e-5)
    assert rows["b-2"] == pytest.approx([-x for x in carried(model, [ids("the dog runs")], ids("the dog"))], abs=6e-5)
    history = [ids("the dog runs"), ids("cat runs .")]
    assert rows["c-1"] == pytest.approx([-x for x in carried(model, history, ids("dog"))], abs=6e-5)
    # The carried context shows: a fresh state gives another score.
    fresh = [-x for x in carried(model, [], ids("the dog"))]
    assert max(abs(a - b) for a, b in zip(rows["b-2"], fresh)) > 1e-3


def test_carry_state_best_follows_the_best_total_with_acoustic_costs(random_lm, tmp_path):
    model = tiny_model(V, seed=5)
    nbest = write(tmp_path / "text", "a-1 the dog runs\na-2 the cat\nb-1 dog\n")
    # a-2's acoustic cost is far lower: it is the best whatever the model says.
    costs = write(tmp_path / "ac", "a-1 500\na-2 1\nb-1 3\n")
    out = ok(random_lm, "--nbest", nbest, "--nbest-acoustic", costs, "--output", "sentence-scores",
             "--carry-state", "best").stdout.split()
    assert float(out[2]) == pytest.approx(sum(carried(model, [ids("the cat")], ids("dog"))) / LN10, abs=2e-6)


@pytest.mark.parametrize("args,named", [
    (["--output", "words"], "--output"),
    (["--carry-state", "all"], "--carry-state"),
    (["--cost"], "--cost"),
    (["--output", "token-scores", "--nbest-sort"], "--nbest-sort"),
    (["--output", "token-scores", "--nbest-best"], "--nbest-best"),
])
def test_bad_output_options_are_usage_errors(uniform_lm, tmp_path, args, named):
    assert named in usage_error(uniform_lm, "--nbest", write(tmp_path / "t", "u-1 the\n"), *args)


@pytest.mark.parametrize("flag", [["--output", "token-scores"], ["--cost"], ["--carry-state", "best"],
                                  ["--symbols", "words.txt"]])
def test_nbest_options_need_nbest(uniform_lm, tmp_path, flag):
    assert "--nbest" in usage_error(uniform_lm, write(tmp_path / "t.txt", "the dog\n"), *flag)


@pytest.mark.parametrize("carry", ["none", "best"])
def test_a_word_longer_than_a_piece_in_a_long_hypothesis_is_one_word(uniform_lm, tmp_path, carry):
    from eval_support import LOG_P
    from rnnlm_cli.score.nbest import LONG_TEXT

    long_word = "x" * (LONG_TEXT + 5000)  # an OOV: one <unk>, however long
    lists = write(tmp_path / "k.txt", f"u1-1 the {long_word} dog\nu1-2 the dog\n")
    out = ok(uniform_lm, "--nbest", lists, "--nbest-format", "kaldi", "--output", "token-scores",
             "--carry-state", carry, "--device", "cpu").stdout.splitlines()
    costs = out[0].split()[1:]
    assert len(costs) == 4  # the, the long word, dog, </s>
    assert [float(c) for c in costs] == pytest.approx([-LOG_P * LN10] * 4, abs=1e-4)
