"""`eval --nbest`'s outputs as one registry: each --output a writer of one scored list.

Rows are built by hand, so each expected line is written out from the definitions: a total
and scores in log10 with six significant digits (SRILM), a cost = -log10 P * ln 10 with six
decimals (Kaldi's legacy route) or four per word (steps/pytorchnn).
"""

from __future__ import annotations

import io
import math

from rnnlm_cli.score.kaldi import ScoredHypothesis
from rnnlm_cli.score.nbest import Hypothesis, NBestList
from rnnlm_cli.score.nbest_outputs import WRITERS, list_writer
from rnnlm_cli.score.scoring_config import NBEST_OUTPUTS, NBestConfig

FIRST = Hypothesis(utterance="u1", rank=1, words=("the", "dog"), acoustic=-10.0, old_lm=None, line=1)
SECOND = Hypothesis(utterance="u1", rank=2, words=("a", "dog"), acoustic=-9.0, old_lm=None, line=2)
ROWS = [ScoredHypothesis(FIRST, word_log10=[-1.0, -0.5, -0.25], lm=-1.75, total=-10.0 + 2 * -1.75),
        ScoredHypothesis(SECOND, word_log10=[-2.0, -0.5, -0.25], lm=-2.75, total=-9.0 + 2 * -2.75)]
LIST = NBestList("u1", [FIRST, SECOND])


def written(output: str, rows=ROWS, best_only: bool = False, cost: bool = False) -> list[str]:
    out = io.StringIO()
    list_writer(out, NBestConfig(output=output, cost=cost), best_only)(LIST, rows)
    return out.getvalue().splitlines()


def test_every_output_the_help_offers_has_a_writer():
    assert set(WRITERS) == set(NBEST_OUTPUTS)


def test_rescored_lines_are_srilm_fields_for_either_kind_of_row():
    expected = ["u1-1 -13.5 -10 -1.75 2 the dog", "u1-2 -14.5 -9 -2.75 2 a dog"]
    assert written("rescored") == expected
    assert written("rescored", rows=[(row.hypothesis, row.lm, row.total) for row in ROWS]) == expected


def test_sentence_scores_are_log10_or_kaldi_costs():
    assert written("sentence-scores") == ["-1.750000", "-2.750000"]
    assert written("sentence-scores", cost=True) == [f"u1-1 {1.75 * math.log(10):.6f}", f"u1-2 {2.75 * math.log(10):.6f}"]


def test_token_scores_are_each_words_cost_then_the_sentence_ends():
    costs = [f"{x * math.log(10):.4f}" for x in (1.0, 0.5, 0.25)]
    assert written("token-scores")[0] == "u1-1 " + " ".join(costs)


def test_best_only_prints_the_best_total_as_kaldi_text():
    assert written("rescored", best_only=True) == ["u1 the dog"]
