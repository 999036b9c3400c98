"""Rescoring n-best lists with a trained model, as ``rnnlm eval --nbest`` does.

Each hypothesis is scored alone, from a fresh state, as one sentence, with OOV words scored
as ``<unk>`` (left out, they would make a hypothesis with unknown words look likely), and
mixed with an n-gram model per word when one is given. Totals follow
:func:`rnnlm_cli.score.nbest.combined`. Lists stream: each is handed on as soon as its
last line is read and scored, so a pipeline from a decoder gets answers while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rnnlm_cli.score.evaluate import TextScorer
from rnnlm_cli.score.nbest import LONG_TEXT, NBestList, Row, iter_nbest, read_score_table, rescore
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig
from rnnlm_cli.score.word_scoring import NgramMix, long_sentence_log10
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import DecodeStats, display_name


@dataclass(frozen=True)
class RescoreResult:
    """What rescoring went through, once every list is out."""

    lists: int
    """Utterances rescored."""
    warnings: tuple[str, ...]
    """One line per kind of surprise reading the lists and the acoustic table found."""


def rescore_nbest(model, tokenizer, path: str, device, config: ScoringConfig = ScoringConfig(),
                  nbest: NBestConfig = NBestConfig(), *, ngram=None, strict: bool = False,
                  on_list: Callable[[int, NBestList, list[Row]], None]) -> RescoreResult:
    """Rescore the n-best lists of ``path`` (a file, a ``.gz`` file or ``-``).

    ``on_list(count, nbest_list, rows)`` gets each utterance's list and its
    ``(hypothesis, lm, total)`` rows (ordered by total with ``nbest.sort``) as soon as
    they are scored; ``count`` runs from 1. ``config`` gives the precision, the weights of
    the totals and, with ``ngram`` (:class:`rnnlm_cli.score.arpa.ArpaModel`), the mix
    weight; its cache and dynamic evaluation score a stream and do not apply here.
    """
    if config.cache or config.dynamic:
        raise ValueError("n-best hypotheses are scored alone: the cache and dynamic evaluation do not apply")
    with config.precision(device):
        mix = None if ngram is None else NgramMix(ngram, config.mix_weight)
        scorer = TextScorer(model, tokenizer, device, unk=True, mix=mix)

        def score_texts(texts: list[str]) -> list[float]:
            # A hypothesis of megabytes is scored piece by piece; batching it with the others
            # would hold a Python object per token.
            short = [text for text in texts if len(text) <= LONG_TEXT]
            found = dict(zip(short, (totals.logprob for totals in scorer.score(short))))
            return [found[text] if text in found else long_sentence_log10(model, tokenizer, text, device, mix=mix)
                    for text in texts]

        table_stats, stats = DecodeStats(), DecodeStats()
        scores = (read_score_table(nbest.acoustic, strict=strict, stats=table_stats)
                  if nbest.acoustic is not None else None)
        lists = iter_nbest(path, nbest.format, scores, strict=strict, stats=stats)
        count = 0
        for count, (nbest_list, rows) in enumerate(
                rescore(lists, score_texts, config.lm_weight, config.word_penalty, nbest.sort), start=1):
            on_list(count, nbest_list, rows)
    notes = [note for name, found in ((path, stats), (nbest.acoustic, table_stats))
             for note in input_warnings(display_name(name or ""), invalid_lines=found.invalid_lines,
                                        replaced_chars=found.replaced_chars, control_chars=found.control_chars)]
    return RescoreResult(lists=count, warnings=tuple(notes))
