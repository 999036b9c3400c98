"""Rescoring with ``rnnlm eval``: n-best lists, and mixing with an n-gram model
(--mix-lm, --lambda, --fit-lambda). See eval_support for how the expected figures are known."""

from __future__ import annotations

import json
import math
import re

import pytest

from conftest import tiny_model
from eval_support import LOG_P, P, V, WORDS, g, ok, run, token_logprobs, usage_error, write
# Fixtures are found by name in the test module, the ones they request among them.
from eval_support import random_lm, uniform_lm, word_tok  # noqa: F401

# A bigram model by hand. Unlisted bigrams back off: backoff(context) + unigram.
ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.0 </s>
-99 <s> -0.3
-0.5 the -0.2
-0.8 dog -0.1
-2.0 cat
-1.5 runs

\\2-grams:
-0.2 <s> the
-0.3 the dog
-0.4 dog runs
-0.1 runs </s>

\\end\\
"""
MIX_TEXT = "the dog runs\nthe cat\nzebra runs\n"
# log10 P_ngram of each scored word of MIX_TEXT, by the back-off recursion ("zebra" is an OOV).
MIX_NGRAM = [
    -0.2, -0.3, -0.4, -0.1,  # the|<s>, dog|the, runs|dog, </s>|runs
    -0.2, -0.2 - 2.0, -1.0,  # the|<s>, cat|the (backoff(the) + P(cat)), </s>|cat (no backoff weight)
    -1.5, -0.1,  # runs|zebra (an unknown context: the unigram), </s>|runs
]
DEV_TEXT = "the cat runs\ncat dog\n"
DEV_NGRAM = [
    -0.2, -0.2 - 2.0, -1.5, -0.1,  # the|<s>, cat|the, runs|cat, </s>|runs
    -0.3 - 2.0, -0.8, -0.1 - 1.0,  # cat|<s>, dog|cat, </s>|dog
]


def mixed(weight: float, ngram_log10: float) -> float:
    """log10 of the per-word mix of the uniform model with the n-gram model."""
    return math.log10(weight * P + (1 - weight) * 10 ** ngram_log10)



@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    return write(tmp_path_factory.mktemp("arpa") / "bigram.arpa", ARPA)


# ---------------------------------------------------------------- n-best rescoring


SRILM_NBEST = ("utt1 -100 -3.0 3 the dog runs\n"
               "utt1 -10 -2.0 2 the cat\n"
               "utt2 -5 -1.0 3 the dog runs\n"
               "utt2 -50 -1.5 4 cat runs the zebra\n")


def sentence_scores(model, tmp_path, texts: list[str]) -> dict[str, float]:
    """Each text's score from ``rnnlm eval --context sentence --per-sentence --unk``."""
    source = write(tmp_path / "texts.txt", "".join(text + "\n" for text in texts))
    out = ok(model, source, "--context", "sentence", "--per-sentence", "--unk").stdout.split()
    return dict(zip(texts, map(float, out)))


def parse_rows(stdout: str) -> list[tuple[str, float, float, float, int, str]]:
    """``KEY TOTAL ACOUSTIC LM NWORDS w1 ... wN`` lines."""
    rows = []
    for line in stdout.splitlines():
        key, total, acoustic, lm, count, *words = line.split(" ")
        rows.append((key, float(total), float(acoustic), float(lm), int(count), " ".join(words)))
    return rows


def test_srilm_nbest_scores_each_hypothesis_alone(random_lm, tmp_path):
    nbest = write(tmp_path / "h.nbest", SRILM_NBEST)
    texts = ["the dog runs", "the cat", "cat runs the zebra"]
    lm = sentence_scores(random_lm, tmp_path, texts)
    # Independently: each text from a fresh state, the OOV "zebra" read as <unk>.
    ids = [[WORDS.index(word) if word in WORDS else 1 for word in text.split()] for text in texts]
    by_hand = [sum(values) / math.log(10) for values in token_logprobs(tiny_model(V, seed=5), ids, carry=False)]
    assert [lm[text] for text in texts] == pytest.approx(by_hand, abs=2e-6)

    result = ok(random_lm, "--nbest", nbest, "--lm-weight", "2", "--word-penalty", "-0.5")
    rows = parse_rows(result.stdout)
    assert [(key, acoustic, count, words) for key, _, acoustic, _, count, words in rows] == [
        ("utt1-1", -100, 3, "the dog runs"), ("utt1-2", -10, 2, "the cat"),
        ("utt2-1", -5, 3, "the dog runs"), ("utt2-2", -50, 4, "cat runs the zebra")]
    for _, total, acoustic, score, count, words in rows:
        assert score == pytest.approx(lm[words], rel=1e-5, abs=1e-6)
        assert total == pytest.approx(acoustic + 2 * lm[words] - 0.5 * count, rel=1e-5)
    # The same text in another list, beside other hypotheses, gets the identical score.
    assert result.stdout.splitlines()[0].split()[3] == result.stdout.splitlines()[2].split()[3]


def test_nbest_sort_and_best(random_lm, tmp_path):
    nbest = write(tmp_path / "h.nbest", SRILM_NBEST)
    rows = parse_rows(ok(random_lm, "--nbest", nbest, "--nbest-sort").stdout)
    # The acoustic scores are far enough apart to decide the order whatever the LM says.
    assert [row[0] for row in rows] == ["utt1-2", "utt1-1", "utt2-1", "utt2-2"]
    assert rows[0][1] >= rows[1][1] and rows[2][1] >= rows[3][1]
    best = ok(random_lm, "--nbest", nbest, "--nbest-best").stdout
    assert best == "utt1 the cat\nutt2 the dog runs\n"


def test_kaldi_nbest_with_acoustic_costs(random_lm, tmp_path):
    nbest = write(tmp_path / "h.txt", "u1-1 the dog runs\nu1-2 the cat\nu2-1 the dog runs\n")
    costs = write(tmp_path / "ac.txt", "u1-1 23.0\nu1-2 2.3\nu2-1 4.6\n")
    lm = sentence_scores(random_lm, tmp_path, ["the dog runs", "the cat"])
    rows = parse_rows(ok(random_lm, "--nbest", nbest, "--nbest-acoustic", costs, "--lm-weight", "3").stdout)
    assert [row[0] for row in rows] == ["u1-1", "u1-2", "u2-1"]
    for (_, total, acoustic, score, _, words), cost in zip(rows, [23.0, 2.3, 4.6]):
        # Kaldi's costs are negated natural logs; the output is log10.
        assert acoustic == pytest.approx(-cost / math.log(10), rel=1e-5)
        assert score == pytest.approx(lm[words], rel=1e-5, abs=1e-6)
        assert total == pytest.approx(-cost / math.log(10) + 3 * lm[words], rel=1e-5)


@pytest.mark.parametrize("content", ["u1-1 the dog\nu1-3 the cat\n", "utt1 -1 -2 2 the dog\nutt1 -1 -2 3 the cat\n"])
def test_bad_nbest_line_is_a_data_error_naming_the_line(uniform_lm, tmp_path, content):
    nbest = write(tmp_path / "h.nbest", content)
    result = run(uniform_lm, "--nbest", nbest)
    assert result.exit_code == 65
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rnnlm: error: {nbest}:2: "), result.stderr


def test_nbest_with_a_file_is_a_usage_error(uniform_lm, tmp_path):
    nbest = write(tmp_path / "h.nbest", SRILM_NBEST)
    text = write(tmp_path / "t.txt", "the dog\n")
    assert "--nbest" in usage_error(uniform_lm, text, "--nbest", nbest)


# ---------------------------------------------------------------- mixing with an n-gram model


def test_mix_scores_each_word_by_linear_interpolation(uniform_lm, arpa, tmp_path):
    text = write(tmp_path / "t.txt", MIX_TEXT)
    report = json.loads(ok(uniform_lm, text, "--mix-lm", arpa, "--lambda", "0.3", "--json").stdout)
    logprob = sum(mixed(0.3, q) for q in MIX_NGRAM)
    assert (report["sentences"], report["words"], report["oovs"], report["zeroprobs"]) == (3, 7, 1, 0)
    assert report["logprob"] == pytest.approx(logprob, abs=1e-6)
    assert report["ppl"] == pytest.approx(10 ** (-logprob / 9), rel=1e-6)  # 7 - 1 + 3
    assert report["ppl1"] == pytest.approx(10 ** (-logprob / 6), rel=1e-6)

    lines = ok(uniform_lm, text, "--mix-lm", arpa, "--lambda", "0.3", "--debug", "2").stdout.splitlines()
    cat = mixed(0.3, MIX_NGRAM[5])
    assert f"\tp( cat | the ...) \t= [3gram] {g(10 ** cat)} [ {g(cat)} ]" in lines
    assert "\tp( zebra | <s> ) \t= [OOV] 0 [ -inf ]" in lines
    assert lines[-1] == (f"0 zeroprobs, logprob= {g(logprob)} ppl= {g(10 ** (-logprob / 9))} "
                         f"ppl1= {g(10 ** (-logprob / 6))}")


def test_lambda_one_is_the_neural_model_and_zero_the_ngram(uniform_lm, arpa, tmp_path):
    text = write(tmp_path / "t.txt", MIX_TEXT)
    plain = ok(uniform_lm, text).stdout
    assert ok(uniform_lm, text, "--mix-lm", arpa, "--lambda", "1").stdout == plain
    assert f"logprob= {g(9 * LOG_P)} " in plain
    ngram = json.loads(ok(uniform_lm, text, "--mix-lm", arpa, "--lambda", "0", "--json").stdout)
    assert ngram["logprob"] == pytest.approx(sum(MIX_NGRAM), abs=1e-9)


def test_lambda_zero_makes_words_the_ngram_lacks_zeroprobs(uniform_lm, arpa, tmp_path):
    text = write(tmp_path / "t.txt", "the .\n")  # "." is the neural model's word only
    report = json.loads(ok(uniform_lm, text, "--mix-lm", arpa, "--lambda", "0", "--json").stdout)
    assert (report["words"], report["oovs"], report["zeroprobs"]) == (2, 0, 1)
    # the|<s>, then </s> after a word the n-gram model does not know: its unigram.
    assert report["logprob"] == pytest.approx(-0.2 - 1.0, abs=1e-9)


@pytest.mark.parametrize("output", ["sentence-scores", "nbest-best"])
def test_a_hypothesis_with_a_zero_probability_word_ranks_last(uniform_lm, arpa, tmp_path, output):
    # "." has probability zero under the n-gram model alone: u1-2 is impossible, however
    # short, and must not gain from the word being left out of its sum.
    # u1-1's log10 is -2.2 under the n-gram model; u1-2's possible words sum to -1.2.
    nbest = write(tmp_path / "h.txt", "u1-1 the dog runs the dog runs\nu1-2 the .\nu2-1 the .\n")
    args = ["--nbest", nbest, "--nbest-format", "kaldi", "--mix-lm", arpa, "--lambda", "0"]
    if output == "nbest-best":
        assert ok(uniform_lm, *args, "--nbest-best").stdout == "u1 the dog runs the dog runs\nu2 the .\n"
        # The same in SRILM's layout (acoustic 0, old LM score, word count, words).
        srilm = write(tmp_path / "h.nbest", "u1 0 0 6 the dog runs the dog runs\nu1 0 0 2 the .\n")
        rows = ok(uniform_lm, "--nbest", srilm, "--mix-lm", arpa, "--lambda", "0").stdout.splitlines()
        assert [float(row.split()[3]) for row in rows] == [pytest.approx(-2.2), -math.inf]
        return
    scores = [float(line) for line in ok(uniform_lm, *args, "--output", "sentence-scores").stdout.split()]
    assert scores == [pytest.approx(-2.2), -math.inf, -math.inf]


def grid_best_weight(ngram: list[float]) -> float:
    """The weight of the uniform model that maximises the likelihood, on a grid of 1e-4."""
    return max((sum(mixed(step / 10_000, q) for q in ngram), step / 10_000) for step in range(1, 10_000))[1]


def test_fit_lambda_without_file_reports_on_stdout(uniform_lm, arpa, tmp_path):
    dev = write(tmp_path / "dev.txt", DEV_TEXT)
    result = ok(uniform_lm, "--mix-lm", arpa, "--fit-lambda", dev)
    first, second = result.stdout.splitlines()
    assert first.startswith(f"fit on {dev}: 7 words, lambda= ")
    weight = float(first.split("lambda= ")[1].split()[0])
    best = grid_best_weight(DEV_NGRAM)
    assert 0.1 < best < 0.9  # the text is chosen so that each model explains some words better
    assert weight == pytest.approx(best, abs=1e-3)
    mix = 10 ** (-sum(mixed(weight, q) for q in DEV_NGRAM) / 7)
    ppls = re.fullmatch(r"ppl rnn= (\S+) ngram= (\S+) mix= (\S+)", second)
    assert ppls is not None, second
    assert [float(value) for value in ppls.groups()] == pytest.approx([7, 10 ** (-sum(DEV_NGRAM) / 7), mix], rel=1e-4)
    assert result.stderr.count("fit on") == 0


def test_fit_lambda_with_file_reports_on_stderr_and_scores_with_the_fit(uniform_lm, arpa, tmp_path):
    dev = write(tmp_path / "dev.txt", DEV_TEXT)
    text = write(tmp_path / "t.txt", MIX_TEXT)
    result = ok(uniform_lm, text, "--mix-lm", arpa, "--fit-lambda", dev, "--json")
    fit = [line for line in result.stderr.splitlines() if line.startswith(f"fit on {dev}: ")]
    assert len(fit) == 1
    weight = float(fit[0].split("lambda= ")[1].split()[0])
    report = json.loads(result.stdout)
    assert report["logprob"] == pytest.approx(sum(mixed(weight, q) for q in MIX_NGRAM), abs=1e-5)
    assert report["logprob"] != pytest.approx(sum(mixed(0.5, q) for q in MIX_NGRAM), abs=1e-3)


def test_fit_lambda_needs_mix_lm(uniform_lm, tmp_path):
    dev = write(tmp_path / "dev.txt", DEV_TEXT)
    assert "--mix-lm" in usage_error(uniform_lm, "--fit-lambda", dev)
