"""What ``rnnlm eval --nbest`` prints: one writer per ``--output``, in :data:`WRITERS`.

Both n-best scorers (:func:`~rnnlm_cli.score.rescoring.rescore_nbest`, SRILM-style, and
:func:`~rnnlm_cli.score.kaldi.score_nbest_lists`, Kaldi's routes) hand each list over as
soon as it is scored, with its rows; a writer puts one list's rows on a text stream, a row
at a time (a hypothesis may be megabytes long). A row is ``(hypothesis, lm, total)`` or a
:class:`~rnnlm_cli.score.kaldi.ScoredHypothesis`, which also holds each word's score.

A new output is one writer here and one entry in :data:`WRITERS`; its name goes into
:data:`~rnnlm_cli.score.scoring_config.NBEST_OUTPUTS` (torch-free, for the help), which a
test keeps equal to these.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TextIO

from rnnlm_cli.score.nbest import NBestList, best_line, format_line
from rnnlm_cli.score.scoring_config import NBestConfig

ListWriter = Callable[[TextIO, NBestList, Sequence[Any], NBestConfig], None]


def _fields(row: Any) -> tuple:
    """``(hypothesis, lm, total)`` of either kind of row."""
    return row if isinstance(row, tuple) else (row.hypothesis, row.lm, row.total)


def write_rescored(out: TextIO, nbest_list: NBestList, rows: Sequence[Any], config: NBestConfig) -> None:
    """SRILM's ``KEY TOTAL ACOUSTIC LM NWORDS w1 ... wN``, log10, as ``rescore-reweight`` prints."""
    for row in rows:
        out.write(format_line(*_fields(row)) + "\n")


def write_sentence_scores(out: TextIO, nbest_list: NBestList, rows: Sequence[Any], config: NBestConfig) -> None:
    """One log10 probability per hypothesis (Mikolov's ``rnnlm -nbest``), or Kaldi's ``KEY cost``."""
    from rnnlm_cli.score.kaldi import sentence_line

    for row in rows:
        out.write(sentence_line(row, as_cost=config.cost) + "\n")


def write_token_scores(out: TextIO, nbest_list: NBestList, rows: Sequence[Any], config: NBestConfig) -> None:
    """``KEY c1 ... cN cEOS``, each word's and the sentence end's cost (``steps/pytorchnn``)."""
    from rnnlm_cli.score.kaldi import token_line_parts

    for row in rows:
        for part in token_line_parts(row):
            out.write(part)
        out.write("\n")


def write_best(out: TextIO, nbest_list: NBestList, rows: Sequence[Any], config: NBestConfig) -> None:
    """``--nbest-best``: the utterance and its best hypothesis' words, Kaldi's text format."""
    out.write(best_line(nbest_list, [_fields(row) for row in rows]) + "\n")


WRITERS: dict[str, ListWriter] = {
    "rescored": write_rescored,
    "sentence-scores": write_sentence_scores,
    "token-scores": write_token_scores,
}
"""``--output`` name -> the writer of one scored list."""


def list_writer(out: TextIO, config: NBestConfig, best_only: bool = False) -> Callable[[NBestList, Sequence[Any]], None]:
    """What writes each scored list to ``out`` for ``config.output`` (or, ``best_only``, its best line)."""
    writer = write_best if best_only else WRITERS[config.output]
    return lambda nbest_list, rows: writer(out, nbest_list, rows, config)
