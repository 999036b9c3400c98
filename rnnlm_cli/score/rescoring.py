"""Rescoring n-best lists with a trained model, as ``rnnlm eval --nbest`` does.

Each hypothesis is scored alone, from a fresh state, as one sentence, with OOV words scored
as ``<unk>`` (left out, they would make a hypothesis with unknown words look likely), and
mixed with an n-gram model per word when one is given. Totals follow
:func:`rnnlm_cli.score.nbest.combined`.

Hypotheses of consecutive lists are scored together (:func:`rescore_windows`): lists are
read until they hold :data:`WINDOW_HYPOTHESES` hypotheses or :data:`WINDOW_WORDS` words,
their distinct texts are scored in one call of
:class:`rnnlm_cli.score.prefix_scoring.HypothesisScorer` (length-sorted batches, or a
prefix tree where the hypotheses share enough), and the lists are handed on in input
order. Lists still stream, so a pipeline from a decoder gets answers while it runs: a
list goes out once the window holding it is full, that is at most
``WINDOW_HYPOTHESES - 1`` hypotheses (or ``WINDOW_WORDS`` words) of later lists, plus
the first line of the list after those, which reading needs to see a list has ended;
or at the end of the input. ``window=1`` hands each list on alone, as soon as its last
line is read (the look-ahead of one line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from rnnlm_cli.score.nbest import LONG_TEXT, NBestList, Row, interpolated, iter_nbest, read_score_table, rescore
from rnnlm_cli.score.prefix_scoring import PREFIX_MODES, HypothesisScorer
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig
from rnnlm_cli.score.word_scoring import NgramMix, long_sentence_log10
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import DecodeStats, display_name


WINDOW_HYPOTHESES = 256
"""Hypotheses of consecutive lists scored together. On a CPU, a 1x256 LSTM scores 10-word
hypotheses about as fast from 256 on as from thousands (``bench/nbest_speed.py``), and a
window this size keeps the look-ahead to a few utterances of a typical decoder's lists."""
WINDOW_WORDS = 16_384
"""Words that also close a window, so lists of long hypotheses keep it small in memory."""


@dataclass(frozen=True)
class RescoreResult:
    """What rescoring went through, once every list is out."""

    lists: int
    """Utterances rescored."""
    warnings: tuple[str, ...]
    """One line per kind of surprise reading the lists and the acoustic table found."""


def rescore_nbest(model, tokenizer, path: str, device, config: ScoringConfig = ScoringConfig(),
                  nbest: NBestConfig = NBestConfig(), *, ngram=None, strict: bool = False,
                  on_list: Callable[[int, NBestList, list[Row]], None], window: int = WINDOW_HYPOTHESES,
                  prefix: str = "auto", backward=None) -> RescoreResult:
    """Rescore the n-best lists of ``path`` (a file, a ``.gz`` file or ``-``).

    ``on_list(count, nbest_list, rows)`` gets each utterance's list and its
    ``(hypothesis, lm, total)`` rows (ordered by total with ``nbest.sort``) as soon as
    they are scored; ``count`` runs from 1. ``config`` gives the precision, the weights of
    the totals and, with ``ngram`` (:class:`rnnlm_cli.score.arpa.ArpaModel`), the mix
    weight; its cache and dynamic evaluation score a stream and do not apply here.

    ``backward`` (a ``(model, tokenizer)`` pair of a model trained with ``--reverse``) scores
    every hypothesis too; the LM score is then ``(1 - b) * forward + b * backward`` with b
    ``config.backward_weight`` (:func:`rnnlm_cli.score.nbest.interpolated`).

    ``window`` (hypotheses) and ``prefix`` (``"auto"``, ``"on"`` or ``"off"``, the prefix
    tree of :class:`rnnlm_cli.score.prefix_scoring.HypothesisScorer`) set how hypotheses are
    batched; the scores do not depend on them beyond float rounding.
    """
    if config.cache or config.dynamic:
        raise ValueError("n-best hypotheses are scored alone: the cache and dynamic evaluation do not apply")
    if window < 1:
        raise ValueError("window must be at least 1 hypothesis")
    if prefix not in PREFIX_MODES:
        raise ValueError(f"prefix must be one of {PREFIX_MODES}")
    with config.precision(device):
        mix = None if ngram is None else NgramMix(ngram, config.mix_weight)
        scorer = HypothesisScorer(model, tokenizer, device, unk=True, mix=mix, prefix=prefix)

        score_texts = _text_scorer(scorer, model, tokenizer, device, mix)
        if backward is not None:
            back_model, back_tokenizer = backward
            back = _text_scorer(HypothesisScorer(back_model, back_tokenizer, device, unk=True, prefix=prefix),
                                back_model, back_tokenizer, device, None)
            score_texts = _interpolating(score_texts, back, config.backward_weight)

        table_stats, stats = DecodeStats(), DecodeStats()
        scores = (read_score_table(nbest.acoustic, strict=strict, stats=table_stats)
                  if nbest.acoustic is not None else None)
        lists = iter_nbest(path, nbest.format, scores, strict=strict, stats=stats)
        count = 0
        for count, (nbest_list, rows) in enumerate(
                rescore_windows(lists, score_texts, config.lm_weight, config.word_penalty, nbest.sort, window),
                start=1):
            on_list(count, nbest_list, rows)
    notes = [note for name, found in ((path, stats), (nbest.acoustic, table_stats))
             for note in input_warnings(display_name(name or ""), invalid_lines=found.invalid_lines,
                                        replaced_chars=found.replaced_chars, control_chars=found.control_chars)]
    return RescoreResult(lists=count, warnings=tuple(notes))


def _text_scorer(scorer: HypothesisScorer, model, tokenizer, device, mix) -> Callable[[list[str]], list[float]]:
    def score_texts(texts: list[str]) -> list[float]:
        # A hypothesis of megabytes is scored piece by piece; batching it with the others
        # would hold a Python object per token.
        short = [text for text in texts if len(text) <= LONG_TEXT]
        found = dict(zip(short, scorer.score(short)))
        return [found[text] if text in found else long_sentence_log10(model, tokenizer, text, device, mix=mix)
                for text in texts]

    return score_texts


def _interpolating(forward: Callable[[list[str]], list[float]], backward: Callable[[list[str]], list[float]],
                   weight: float) -> Callable[[list[str]], list[float]]:
    def score_texts(texts: list[str]) -> list[float]:
        return [interpolated(f, g, weight) for f, g in zip(forward(texts), backward(texts))]

    return score_texts


def rescore_windows(lists: Iterable[NBestList], score_texts: Callable[[list[str]], list[float]],
                    lm_weight: float, word_penalty: float, sort: bool, window: int = WINDOW_HYPOTHESES,
                    window_words: int = WINDOW_WORDS) -> Iterator[tuple[NBestList, list[Row]]]:
    """:func:`rnnlm_cli.score.nbest.rescore` over windows of lists: ``score_texts`` is called
    once per window with its distinct texts, in first-seen order.

    A window closes once its lists hold ``window`` hypotheses or ``window_words`` words, so
    a list is yielded before more than that many hypotheses (words) of later lists are
    taken from ``lists``; each list is yielded in input order, its rows as ``rescore`` makes them.
    """
    group: list[NBestList] = []
    hypotheses = words = 0
    for nbest_list in lists:
        group.append(nbest_list)
        hypotheses += len(nbest_list.hypotheses)
        words += sum(len(hyp.words) for hyp in nbest_list.hypotheses)
        if hypotheses >= window or words >= window_words:
            yield from _rescore_group(group, score_texts, lm_weight, word_penalty, sort)
            group, hypotheses, words = [], 0, 0
    yield from _rescore_group(group, score_texts, lm_weight, word_penalty, sort)


def _rescore_group(group: list[NBestList], score_texts: Callable[[list[str]], list[float]], lm_weight: float,
                   word_penalty: float, sort: bool) -> Iterator[tuple[NBestList, list[Row]]]:
    if not group:
        return
    texts = list(dict.fromkeys(hyp.text for nbest_list in group for hyp in nbest_list.hypotheses))
    scores = list(score_texts(texts)) if texts else []
    if len(scores) != len(texts):
        raise ValueError(f"score_texts returned {len(scores)} scores for {len(texts)} texts")
    score_of = dict(zip(texts, scores))
    yield from rescore(group, lambda chosen: [score_of[text] for text in chosen], lm_weight, word_penalty, sort)
