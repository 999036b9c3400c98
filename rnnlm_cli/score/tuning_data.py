"""An n-best set read for tuning: the lists, their acoustic scores, the references, and every
hypothesis' scores from the models, each computed once (:mod:`rnnlm_cli.score.tuning` then
searches the weights without scoring again).

The whole set is held in memory, a few numbers per hypothesis and per word: a tuning set is
a development set, thousands of hypotheses, not a stream. Each distinct text is scored once
per model, from a fresh state, words outside the vocabulary as ``<unk>``, as ``--nbest``
rescoring scores it, so a weight chosen here gives the same totals there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnnlm_cli.errors import DataError
from rnnlm_cli.score.kaldi import StateScorer, ids_to_words, read_id_table
from rnnlm_cli.score.nbest import iter_nbest, read_score_table
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig
from rnnlm_cli.score.tuning_grid import ScoredLists
from rnnlm_cli.score.wer import read_references, word_errors
from rnnlm_cli.score.word_scoring import NgramMix
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import DecodeStats, display_name

WINDOW_TEXTS = 256
"""Distinct texts scored in one call: batches stay the size n-best rescoring uses."""


@dataclass(frozen=True)
class ModelPair:
    """A model and its tokenizer, as :func:`rnnlm_cli.store.checkpoint.load_model` gives them."""

    model: object
    tokenizer: object


@dataclass
class _Gathered:
    utterances: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])
    texts: list[str] = field(default_factory=list)
    acoustic: list[float] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    """One per utterance."""


def score_lists(forward: ModelPair, path: str, references_path: str, device, config: ScoringConfig = ScoringConfig(),
                nbest: NBestConfig = NBestConfig(), *, ngram=None, backward: ModelPair | None = None,
                strict: bool = False, on_progress: Callable[[int], None] | None = None,
                warnings: list[str] | None = None) -> ScoredLists:
    """Every hypothesis of the lists at ``path`` with its scores and its word errors against
    the references at ``references_path`` (Kaldi's ``UTT w1 ... wN``). What reading found
    odd goes into ``warnings``."""
    stats, table_stats, reference_stats = DecodeStats(), DecodeStats(), DecodeStats()
    references = read_references(references_path, strict, reference_stats)
    gathered = _gather(path, references, references_path, nbest, strict, stats, table_stats)
    if warnings is not None:
        unused = len(references) - len(gathered.utterances)
        if unused:
            warnings.append(f"{display_name(references_path)}: {unused} of {len(references)} references have no "
                            f"n-best list; the WER is over the {len(gathered.utterances)} utterances that have one")
        for name, found in ((path, stats), (nbest.acoustic, table_stats), (references_path, reference_stats)):
            warnings.extend(input_warnings(display_name(name or ""), invalid_lines=found.invalid_lines,
                                           replaced_chars=found.replaced_chars, control_chars=found.control_chars))
    starts = np.asarray(gathered.starts, dtype=np.int64)
    owners = np.repeat(np.arange(len(gathered.utterances)), np.diff(starts))
    reference_words = sum(len(text.split()) for text in gathered.references)
    if reference_words == 0:
        raise DataError(f"{display_name(references_path)}: the references of the listed utterances hold no words: "
                        "a word error rate needs some")
    errors = word_errors([gathered.references[owner] for owner in owners], gathered.texts)
    lists = ScoredLists(gathered.utterances, starts, np.asarray(gathered.acoustic, dtype=np.float64),
                        np.asarray(gathered.words, dtype=np.int64), np.asarray(errors, dtype=np.int64),
                        reference_words, forward=np.zeros(len(gathered.texts)), texts=gathered.texts,
                        references=gathered.references)
    with config.precision(device):
        _score_forward(lists, forward, device, ngram, on_progress)
        if backward is not None:
            scorer = StateScorer(backward.model, backward.tokenizer, device)
            lists.backward = _by_hypothesis(lists.texts, lambda texts: [sum(s) for s in scorer.score(texts)])
    return lists


def _gather(path: str, references: dict[str, str], references_path: str, nbest: NBestConfig, strict: bool,
            stats: DecodeStats, table_stats: DecodeStats) -> _Gathered:
    table, is_non_word = read_id_table(nbest.symbols) if nbest.symbols is not None else (None, None)
    scores = read_score_table(nbest.acoustic, strict=strict, stats=table_stats) if nbest.acoustic is not None else None
    name, gathered = display_name(path), _Gathered()
    for nbest_list in iter_nbest(path, nbest.format, scores, strict=strict, stats=stats):
        if table is not None:
            nbest_list = ids_to_words(nbest_list, table, is_non_word, nbest.symbols, name)
        reference = references.get(nbest_list.utterance)
        if reference is None:
            raise DataError(f"{name}:{nbest_list.hypotheses[0].line}: utterance {nbest_list.utterance!r} has no "
                            f"reference in {display_name(references_path)}")
        gathered.utterances.append(nbest_list.utterance)
        gathered.references.append(reference)
        for hyp in nbest_list.hypotheses:
            gathered.texts.append(hyp.text)
            gathered.acoustic.append(hyp.acoustic)
            gathered.words.append(len(hyp.words))
        gathered.starts.append(len(gathered.texts))
    return gathered


def _score_forward(lists: ScoredLists, forward: ModelPair, device, ngram, on_progress) -> None:
    """The model's score of each hypothesis and, with an n-gram model, both models' score of each word."""
    # The mix's weight does not matter here: each word's two log10s are kept apart, and mixed per weight later.
    scorer = StateScorer(forward.model, forward.tokenizer, device, mix=None if ngram is None else NgramMix(ngram, 0.5))
    distinct = list(dict.fromkeys(lists.texts))
    scored: dict[str, list] = {}
    for start in range(0, len(distinct), WINDOW_TEXTS):
        window = distinct[start:start + WINDOW_TEXTS]
        scored.update(zip(window, scorer.word_scores(window)))
        if on_progress is not None:
            on_progress(min(start + WINDOW_TEXTS, len(distinct)))
    words = [scored[text] for text in lists.texts]
    lists.forward = np.asarray([sum(word.model_log10 for word in hyp) for hyp in words], dtype=np.float64)
    if ngram is not None:
        lists.word_model = np.asarray([word.model_log10 for hyp in words for word in hyp], dtype=np.float64)
        lists.word_ngram = np.asarray([word.ngram_log10 for hyp in words for word in hyp], dtype=np.float64)
        lists.word_owner = np.repeat(np.arange(len(words)), [len(hyp) for hyp in words])


def _by_hypothesis(texts: list[str], score: Callable[[list[str]], list[float]]) -> np.ndarray:
    """(H,) ``score`` of each text, each distinct text scored once, a window at a time."""
    distinct = list(dict.fromkeys(texts))
    found: dict[str, float] = {}
    for start in range(0, len(distinct), WINDOW_TEXTS):
        window = distinct[start:start + WINDOW_TEXTS]
        found.update(zip(window, score(window)))
    return np.asarray([found[text] for text in texts], dtype=np.float64)
