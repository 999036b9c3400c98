"""rescore_nbest called from Python: each hypothesis' LM score against a forward pass written
here, totals by SRILM's formula, ordering, the mix with an n-gram model, Kaldi acoustic costs,
and what it reports. See eval_support for the models."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlm_cli.score.arpa import read_arpa
from rnnlm_cli.score.nbest import LONG_TEXT
from rnnlm_cli.score.rescoring import rescore_nbest
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig
from rnnlm_cli.text.tokenizers import WordTokenizer

from conftest import tiny_model
from eval_support import LOG_P, P, V, WORDS, token_logprobs, uniform, write

CPU = torch.device("cpu")
TOKENIZER = WordTokenizer(WORDS)
# A unigram model: every word's log10 probability whatever its context; "runs" is unknown to it.
UNIGRAM_ARPA = "\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0 </s>\n-99 <s>\n-0.5 the\n-0.8 dog\n-2.0 cat\n\n\\end\\\n"
NBEST = "u1 -10 -5 3 the dog runs\nu1 -12 -4 2 the cat\nu2 -3 -1 1 zebra\nu2 -3 -1 0\n"


def collect(model, path, config=ScoringConfig(), nbest=NBestConfig(), **options):
    """Each list's utterance and (key, lm, total) rows, and the result."""
    seen = []

    def on_list(count, nbest_list, rows):
        assert count == len(seen) + 1
        seen.append((nbest_list.utterance, [(hyp.key, lm, total) for hyp, lm, total in rows]))

    result = rescore_nbest(model, TOKENIZER, str(path), CPU, config, nbest, on_list=on_list, **options)
    return seen, result


def test_uniform_model_scores_every_word_and_line_end_at_one_over_v(tmp_path):
    seen, result = collect(uniform(V), write(tmp_path / "n.nbest", NBEST))
    # lm = (words + 1) * log10(1/V): "zebra" is scored as <unk>, the line end counts.
    assert [utterance for utterance, _ in seen] == ["u1", "u2"]
    rows = [row for _, rows in seen for row in rows]
    assert [key for key, _, _ in rows] == ["u1-1", "u1-2", "u2-1", "u2-2"]
    assert [lm for _, lm, _ in rows] == pytest.approx([4 * LOG_P, 3 * LOG_P, 2 * LOG_P, LOG_P], abs=1e-6)
    # total = acoustic + 1 * lm + 0 * words, with the defaults.
    assert [total for _, _, total in rows] == pytest.approx(
        [-10 + 4 * LOG_P, -12 + 3 * LOG_P, -3 + 2 * LOG_P, -3 + LOG_P], abs=1e-6)
    assert result.lists == 2 and result.warnings == ()


def test_weights_and_sorting_follow_the_config(tmp_path):
    config = ScoringConfig(context="sentence", lm_weight=12.0, word_penalty=-0.5)
    seen, _ = collect(uniform(V), write(tmp_path / "n.nbest", NBEST), config, NBestConfig(sort=True))
    totals = {key: total for _, rows in seen for key, _, total in rows}
    assert totals == pytest.approx({"u1-1": -10 + 12 * 4 * LOG_P - 1.5, "u1-2": -12 + 12 * 3 * LOG_P - 1.0,
                                    "u2-1": -3 + 12 * 2 * LOG_P - 0.5, "u2-2": -3 + 12 * LOG_P}, abs=1e-5)
    # Highest total first: u1-2's -43.4 before u1-1's -52.1, u2-2's -13.1 before u2-1's -23.8.
    assert [[key for key, _, _ in rows] for _, rows in seen] == [["u1-2", "u1-1"], ["u2-2", "u2-1"]]


def test_each_hypothesis_is_scored_from_a_fresh_state(tmp_path):
    model = tiny_model(V, seed=5)
    seen, _ = collect(model, write(tmp_path / "n.nbest", NBEST))
    ids = {"the": 2, "dog": 3, "cat": 4, "runs": 5, "zebra": 1}
    hypotheses = [["the", "dog", "runs"], ["the", "cat"], ["zebra"], []]
    # One forward pass per hypothesis from <eos>, the sum of its tokens' and the line end's log10.
    expected = [sum(logprobs) / math.log(10)
                for logprobs in token_logprobs(model, [[ids[w] for w in hyp] for hyp in hypotheses], carry=False)]
    got = [lm for _, rows in seen for _, lm, _ in rows]
    assert got == pytest.approx(expected, abs=1e-5)


def test_the_mix_with_an_ngram_model_is_per_word(tmp_path):
    ngram = read_arpa(str(write(tmp_path / "u.arpa", UNIGRAM_ARPA)))
    nbest = write(tmp_path / "n.nbest", "u1 0 0 2 the dog\nu1 0 0 2 the runs\n")
    seen, _ = collect(uniform(V), nbest, ScoringConfig(mix_weight=0.25), ngram=ngram)

    def mixed(ngram_log10):
        return math.log10(0.25 * P + 0.75 * 10 ** ngram_log10)

    # "runs" is unknown to the unigram model (probability 0 there): the neural share alone.
    expected = [mixed(-0.5) + mixed(-0.8) + mixed(-1.0), mixed(-0.5) + math.log10(0.25 * P) + mixed(-1.0)]
    assert [lm for _, rows in seen for _, lm, _ in rows] == pytest.approx(expected, abs=1e-6)


def test_kaldi_lists_take_acoustic_costs_in_natural_log_from_the_table(tmp_path):
    lists = write(tmp_path / "k.txt", "u1-1 the dog\nu1-2 the\n")
    table = write(tmp_path / "ac.txt", "u1-1 2.302585092994046\nu1-2 0\n")
    seen, _ = collect(uniform(V), lists, nbest=NBestConfig(format="kaldi", acoustic=str(table)))
    # A cost c is the log10 score -c / ln 10: ln(10) is one decade.
    assert [key for key, _, _ in seen[0][1]] == ["u1-1", "u1-2"]
    assert [(lm, total) for _, lm, total in seen[0][1]] == [pytest.approx((3 * LOG_P, -1 + 3 * LOG_P)),
                                                             pytest.approx((2 * LOG_P, 2 * LOG_P))]


def test_a_hypothesis_past_the_long_text_limit_is_scored_in_pieces_to_the_same_figure(tmp_path):
    words = ["the", "dog", "cat", "runs"] * (LONG_TEXT // 12)
    assert len(" ".join(words)) > LONG_TEXT
    lists = write(tmp_path / "n.nbest", f"u1 0 0 {len(words)} {' '.join(words)}\nu1 0 0 1 the\n")
    seen, _ = collect(uniform(V), lists)
    assert [lm for _, lm, _ in seen[0][1]] == pytest.approx([(len(words) + 1) * LOG_P, 2 * LOG_P], rel=1e-6)


def test_reading_surprises_come_back_as_warnings(tmp_path):
    lists = tmp_path / "bad.nbest"
    lists.write_bytes(b"u1 -1 -2 1 \xffx\n")
    _, result = collect(uniform(V), lists)
    assert result.lists == 1
    assert result.warnings == (f"{lists}: 1 line(s) with invalid UTF-8, 1 character(s) replaced "
                               "(use --strict to refuse)",)


@pytest.mark.parametrize("config", [ScoringConfig(cache=10), ScoringConfig(dynamic=True)])
def test_stream_adaptation_is_refused(tmp_path, config):
    with pytest.raises(ValueError, match="scored alone"):
        collect(uniform(V), write(tmp_path / "n.nbest", NBEST), config)
