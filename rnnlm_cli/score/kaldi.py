"""Kaldi's n-best rescoring routes: symbol tables, per-sentence and per-word costs, and a
state carried from one utterance to the next.

Two Kaldi routes consume what this module computes:

* the legacy RNNLM route (``utils/rnnlm_compute_scores.sh`` around Mikolov's
  ``rnnlm -independent -nbest``): one log10 probability per hypothesis, in input order,
  each hypothesis from a fresh state; Kaldi turns it into ``KEY cost`` with
  ``cost = -log10 P * ln 10`` (:func:`sentence_line`);
* the PyTorch route (``steps/pytorchnn``): ``KEY c1 ... cN cEOS``, the cost (negated
  natural log) of each word and of the sentence end (:func:`token_line`), optionally
  with the state carried across utterances (``carry_state="best"``).

Symbol tables (Kaldi's ``word id`` per line, or an ESPnet token list, :func:`read_id_table`)
turn hypotheses written as integer ids (``nbest-to-linear``'s output before ``int2sym.pl``,
ESPnet's ``token_int``) into words. Ids of the table's non-words (Kaldi's ``<eps>``, ``<s>``,
``</s>`` and the disambiguation symbols ``#0``, ``#1`` ...; ESPnet's ``<blank>`` and
``<sos/eos>``) are dropped: the model scores the sentence end once, as its own ``<eos>``,
and never a sentence start.

A backward model (``rnnlm train --reverse``, :mod:`rnnlm_cli.text.backward`) needs nothing of
its caller: its tokenizer reads each hypothesis right to left, as Kaldi's backward RNNLM
(``rnnlm/lmrescore_back.sh``) scores each sentence reversed from a fresh state. The sentence
score is its log P(wN ... w1 </s>); the per-word costs stay in reading order, each word's cost
given the words after it, and the last cost is the backward model's sentence end (predicted
after the first word), so a caller that sums or aligns them needs no change.

A carried state is the conversation context of ``steps/pytorchnn``: utterances are taken
as one conversation in input order, and the state after the previous utterance's best
hypothesis (its ``<eos>``-started words, as the stream context reads a line) starts the
next utterance's scoring. It never resets: give each recording's lists as its own input.
"""

from __future__ import annotations

import dataclasses
import io
import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.models.lm import select_state
from rnnlm_cli.score.nbest import (LONG_TEXT, Hypothesis, NBestList, WordRun, combined, interpolated, iter_nbest,
                                   read_score_table)
from rnnlm_cli.score.rescoring import RescoreResult
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig
from rnnlm_cli.score.token_scoring import Piece, PieceEncoder, padded_batch
from rnnlm_cli.score.word_scoring import (NgramMix, WordScore, check_mixable, long_sentence_words, piece_words,
                                          text_pieces)
from rnnlm_cli.text.backward import line_segments
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import MAX_DIGITS, DecodeStats, display_name
from rnnlm_cli.text.symbol_tables import ESPNET_BLANK, ESPNET_EOS, is_kaldi_non_word, read_symbol_table
from rnnlm_cli.units import LN10

_ID = re.compile(r"[0-9]+")


def read_id_table(path: str) -> tuple[dict[int, str], Callable[[str], bool]]:
    """id -> symbol of a Kaldi symbol table or an ESPnet token list, and the test for the
    symbols that are not words (Kaldi's ``<eps>``, ``<s>``, ``</s>``, ``#N``; ESPnet's
    ``<blank>`` and ``<sos/eos>``)."""
    layout, entries = read_symbol_table(path)
    if layout == "kaldi":
        return {symbol_id: symbol for symbol, symbol_id in entries}, is_kaldi_non_word
    return {symbol_id: symbol for symbol, symbol_id in entries}, lambda symbol: symbol in (ESPNET_BLANK, ESPNET_EOS)


def ids_to_words(nbest_list: NBestList, table: dict[int, str], is_non_word: Callable[[str], bool], table_name: str,
                 list_name: str) -> NBestList:
    """The list with each hypothesis' integer ids replaced by the table's words, non-words
    dropped; a long hypothesis (:class:`WordRun`) stays one text."""
    hypotheses = []
    for hyp in nbest_list.hypotheses:
        words = (_symbol(token, hyp, table, table_name, list_name) for token in hyp.words)
        kept = (word for word in words if not is_non_word(word))
        if isinstance(hyp.words, WordRun):
            text, count = io.StringIO(), 0
            for word in kept:
                text.write(" " if count else "")
                text.write(word)
                count += 1
            hypotheses.append(dataclasses.replace(hyp, words=WordRun(text.getvalue(), count)))
        else:
            hypotheses.append(dataclasses.replace(hyp, words=tuple(kept)))
    return NBestList(nbest_list.utterance, hypotheses)


def _symbol(token: str, hyp: Hypothesis, table: dict[int, str], table_name: str, list_name: str) -> str:
    symbol = table.get(int(token)) if _ID.fullmatch(token) and len(token) <= MAX_DIGITS else None
    if symbol is None:
        raise DataError(f"{list_name}:{hyp.line}: {token[:40]!r} in {hyp.key!r} is not an id of {table_name} "
                        "(with --symbols, hypotheses are integer ids, as nbest-to-linear writes them)")
    return symbol


@dataclass(frozen=True)
class ScoredHypothesis:
    """One hypothesis with its model scores."""

    hypothesis: Hypothesis
    word_log10: Sequence[float]
    """The log10 probability of each word, then of ``</s>`` (the sentence end); a compact
    ``array('d')`` for a hypothesis of over :data:`LONG_TEXT` characters."""
    lm: float
    """log10 probability of the hypothesis: the sum of ``word_log10`` (``-inf`` when a word has probability zero)."""
    total: float
    """``acoustic + lm_weight * lm + word_penalty * words``, log10 (:func:`rnnlm_cli.score.nbest.combined`)."""


class StateScorer:
    """Scores hypotheses from one shared starting state: fresh, or carried from earlier text.

    Each hypothesis is one sentence: ``<eos> w1 ... wN`` is read to predict
    ``w1 ... wN <eos>``, as every line is scored elsewhere. OOV words are scored as ``<unk>``.
    Hypotheses of up to :data:`LONG_TEXT` characters are batched together; a longer one is
    read a piece at a time, so memory holds a piece's tokens and 8 bytes a word, never a
    Python object per token.
    """

    def __init__(self, model, tokenizer, device, *, mix: NgramMix | None = None, batch_tokens: int = 4096,
                 chunk_tokens: int = 256) -> None:
        check_mixable(tokenizer, mix)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._device = device
        self._mix = mix
        self._batch_tokens = batch_tokens
        self._chunk_tokens = chunk_tokens
        self.state = None
        """The state scoring starts from; None: a fresh (zero) state."""

    def score(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """Each text's log10 word probabilities, ``</s>``'s last."""
        short = [text for text in texts if len(text) <= LONG_TEXT]
        found = {text: [word.log10 for word in words] for text, words in zip(short, self._score_short(short))}
        return [found[text] if text in found else self._score_long(text) for text in texts]

    def word_scores(self, texts: Sequence[str]) -> list[list[WordScore]]:
        """Each text's scored words, ``</s>`` last: the model's log10 of each and, with a mix,
        the n-gram model's beside it."""
        short = [text for text in texts if len(text) <= LONG_TEXT]
        found = dict(zip(short, self._score_short(short)))
        return [found[text] if text in found else self._long_words(text) for text in texts]

    def _long_words(self, text: str) -> list[WordScore]:
        return [word for words in long_sentence_words(self._model, self._tokenizer, text, self._device, mix=self._mix,
                                                      piece_chars=LONG_TEXT, chunk_tokens=self._chunk_tokens,
                                                      state=self._start(1)) for word in words]

    def _score_long(self, text: str) -> array:
        scores = array("d")
        for words in long_sentence_words(self._model, self._tokenizer, text, self._device, mix=self._mix,
                                         piece_chars=LONG_TEXT, chunk_tokens=self._chunk_tokens,
                                         state=self._start(1)):
            scores.extend(word.log10 for word in words)
        return scores

    def _score_short(self, texts: Sequence[str]) -> list[list[WordScore]]:
        encoder = PieceEncoder(self._tokenizer)
        pieces = [encoder.encode(text, True, context=self._tokenizer.eos_id) for text in texts]
        batch: list[Piece] = []
        longest = 0
        for piece in pieces:
            longest_then = max(longest, len(piece.targets))
            if batch and longest_then * (len(batch) + 1) > self._batch_tokens:
                self._run(batch)
                batch, longest_then = [], len(piece.targets)
            batch.append(piece)
            longest = longest_then
        if batch:
            self._run(batch)
        scored = []
        for piece in pieces:
            words = piece_words(piece, unk=True)
            if self._mix is not None:
                self._mix.apply(words)
            scored.append(words)
        return scored

    @torch.no_grad()
    def advance(self, text: str) -> None:
        """Move the state on over ``<eos>`` and ``text``'s tokens: the context the next sentence is read in."""
        state = self._start(1)
        ids = [self._tokenizer.eos_id]
        for piece, _ in line_segments(self._tokenizer, text_pieces(text, LONG_TEXT)):
            ids.extend(self._tokenizer.encode(piece))
            while len(ids) >= self._chunk_tokens:
                state = self._read(ids[:self._chunk_tokens], state)
                del ids[:self._chunk_tokens]
        self.state = self._read(ids, state) if ids else state

    def _read(self, ids: list[int], state):
        x = torch.tensor(ids, device=self._device).unsqueeze(1)  # (T, 1)
        return self._model.hidden_states(x, state)[1]

    def _start(self, batch: int):
        if self.state is None:
            return self._model.init_state(batch, device=self._device)
        return select_state(self.state, torch.zeros(batch, dtype=torch.long))

    @torch.no_grad()
    def _run(self, batch: list[Piece]) -> None:
        x, y = padded_batch(batch)
        x, y = x.to(self._device), y.to(self._device)
        state = self._start(len(batch))
        chunks = []
        # Padding comes after each hypothesis' last token, so it never reaches a real target;
        # time chunks bound the (T, N, V) logits of a long hypothesis.
        for start in range(0, x.shape[0], self._chunk_tokens):
            stop = start + self._chunk_tokens
            logprobs, state = self._model(x[start:stop], state, targets=y[start:stop])  # (t, N)
            chunks.append(logprobs)
        logprobs = torch.cat(chunks).t().double().cpu()  # (N, T)
        for column, piece in enumerate(batch):
            piece.logprobs.extend(logprobs[column, : len(piece.targets)].tolist())


def best_of(scored: Sequence[ScoredHypothesis], by_total: bool) -> ScoredHypothesis:
    """The hypothesis a carried state continues from: the highest total (ties: the lowest
    rank) when the list has acoustic scores, otherwise rank 1, the decoder's own best."""
    if by_total:
        return min(scored, key=lambda row: (-row.total, row.hypothesis.rank))
    return min(scored, key=lambda row: row.hypothesis.rank)


def score_nbest_lists(model, tokenizer, path: str, device, config: ScoringConfig = ScoringConfig(),
                      nbest: NBestConfig = NBestConfig(), *, ngram=None, strict: bool = False,
                      on_list: Callable[[int, NBestList, list[ScoredHypothesis]], None],
                      backward=None) -> RescoreResult:
    """Score every hypothesis of the n-best lists in ``path``, with per-word scores.

    ``on_list(count, nbest_list, rows)`` gets each list, as soon as it is scored, with one
    :class:`ScoredHypothesis` per hypothesis in input order (by total, best first, with
    ``nbest.sort``). ``nbest.symbols`` maps integer ids to words; ``nbest.carry_state``
    ``"best"`` starts each utterance from the state after the previous one's best hypothesis
    (:func:`best_of`). Hypotheses with the same text in one list share their scores.
    ``backward``, a ``(model, tokenizer)`` pair of a model trained with ``--reverse``, makes each
    row's ``lm`` and ``total`` ``(1 - b) * forward + b * backward`` (b ``config.backward_weight``);
    ``word_log10`` stays the forward model's.
    """
    if config.cache or config.dynamic:
        raise ValueError("n-best hypotheses are scored as sentences: the cache and dynamic evaluation do not apply")
    table, is_non_word = read_id_table(nbest.symbols) if nbest.symbols is not None else (None, None)
    table_stats, stats = DecodeStats(), DecodeStats()
    scores = read_score_table(nbest.acoustic, strict=strict, stats=table_stats) if nbest.acoustic is not None else None
    lists: Iterator[NBestList] = iter_nbest(path, nbest.format, scores, strict=strict, stats=stats)
    name = display_name(path)
    count = 0
    with config.precision(device):
        mix = None if ngram is None else NgramMix(ngram, config.mix_weight)
        scorer = StateScorer(model, tokenizer, device, mix=mix)
        back = None if backward is None else StateScorer(*backward, device)
        for count, nbest_list in enumerate(lists, start=1):
            if table is not None:
                nbest_list = ids_to_words(nbest_list, table, is_non_word, nbest.symbols, name)
            texts = list(dict.fromkeys(hyp.text for hyp in nbest_list.hypotheses))
            scores_of = dict(zip(texts, scorer.score(texts)))
            back_of = {} if back is None else dict(zip(texts, map(sum, back.score(texts))))
            rows = []
            for hyp in nbest_list.hypotheses:
                # OOVs are scored as <unk>, so every word counts, and one of probability zero makes -inf.
                lm = sum(scores_of[hyp.text])
                if back is not None:
                    lm = interpolated(lm, back_of[hyp.text], config.backward_weight)
                total = combined(hyp.acoustic, lm, config.lm_weight, config.word_penalty, len(hyp.words))
                rows.append(ScoredHypothesis(hyp, scores_of[hyp.text], lm, total))
            if nbest.carry_state == "best":
                has_acoustic = scores is not None or nbest_list.hypotheses[0].old_lm is not None
                scorer.advance(best_of(rows, by_total=has_acoustic).hypothesis.text)
            if nbest.sort:
                rows.sort(key=lambda row: (-row.total, row.hypothesis.rank))
            on_list(count, nbest_list, rows)
    notes = [note for note_name, found in ((path, stats), (nbest.acoustic, table_stats))
             for note in input_warnings(display_name(note_name or ""), invalid_lines=found.invalid_lines,
                                        replaced_chars=found.replaced_chars, control_chars=found.control_chars)]
    return RescoreResult(lists=count, warnings=tuple(notes))


def cost(log10: float) -> float:
    """Kaldi's cost of a log10 probability: its negated natural log (``inf`` for probability zero)."""
    # + 0.0 turns -0.0 (a certain word) into 0.0, which prints without a sign.
    return -log10 * LN10 + 0.0


def sentence_line(row: ScoredHypothesis, as_cost: bool = False) -> str:
    """Mikolov's ``rnnlm -nbest`` line, the log10 probability alone; or Kaldi's ``KEY cost``."""
    if as_cost:
        return f"{row.hypothesis.key} {cost(row.lm):.6f}"
    return f"{row.lm + 0.0:.6f}"


def token_line(row: ScoredHypothesis) -> str:
    """``KEY c1 ... cN cEOS``: each word's cost and the sentence end's, 4 decimals."""
    return "".join(token_line_parts(row))


def token_line_parts(row: ScoredHypothesis, words: int = 4096) -> Iterator[str]:
    """:func:`token_line` in parts of ``words`` costs, to write a line of megabytes without holding it."""
    yield row.hypothesis.key
    scores = row.word_log10
    for start in range(0, len(scores), words):
        yield "".join(f" {cost(log10):.4f}" for log10 in scores[start:start + words])

