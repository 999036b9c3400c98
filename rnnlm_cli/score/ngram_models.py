"""The n-gram model behind ``--mix-lm``: KenLM's when its Python module is installed, else ours.

Both answer the one question the mix asks, ``logprob(word, context)`` in log10 with
``context`` the words before it (``<s>`` first at a line's start), and ``order``:

* :class:`~rnnlm_cli.score.arpa.ArpaModel` reads ARPA text into Python dicts: no
  dependency, but memory and load time grow with every n-gram (several hundred bytes each).
* :class:`KenlmModel` wraps ``kenlm.Model`` (Heafield, 2011), an optional extra
  (``pip install 'rnnlm[kenlm]'``): it reads ARPA text or KenLM's binary files (memory
  mapped, loaded in a moment), in a fraction of the memory.

Both follow the same back-off recursion and agree on every word to float rounding. Where
the model has no ``<unk>``, KenLM scores an unknown word at log10 -100 (its stand-in); the
wrapper gives -inf there, a zero probability, as the ARPA reader does. KenLM reads ARPA
files with tabs between fields only; ``auto`` falls back to the ARPA reader (which takes
any whitespace) for a file KenLM cannot parse, and says so.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Sequence

from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.files.spool import spooled
from rnnlm_cli.score.arpa import BOS, EOS, read_arpa
from rnnlm_cli.text.reading import check_readable, display_name

BACKENDS = ("auto", "kenlm", "python")
KENLM_MISSING = "needs the kenlm module: pip install 'rnnlm[kenlm]'"
_MISSING_UNK = -100.0
"""The log10 probability KenLM gives ``<unk>`` when the model does not list it."""
_BINARY_MAGIC = b"mmap lm "
"""The start of every KenLM binary file ("mmap lm http://kheafield.com/code format version ...")."""


def kenlm_module():
    """The ``kenlm`` module, or None when it is not installed."""
    try:
        return importlib.import_module("kenlm")
    except ImportError:
        return None


def is_kenlm_binary(path: str) -> bool:
    """Whether the file at ``path`` (a regular file: :func:`load_ngram` copies a pipe first)
    starts as KenLM's binary models do."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_BINARY_MAGIC)) == _BINARY_MAGIC
    except OSError:
        return False


def load_ngram(path: str, backend: str = "auto", note: Callable[[str], None] = lambda _: None):
    """The n-gram model at ``path`` (ARPA text, ``.gz``, ``-``, a pipe, or a KenLM binary file).

    ``auto`` takes KenLM when its module is installed, else the ARPA reader; ``kenlm`` and
    ``python`` insist on one. ``note`` gets a line when ``auto`` falls back from KenLM to the
    ARPA reader. A read-once input (stdin, a FIFO, ``<(...)``) is copied once first: telling
    a binary model from text reads its head, which a pipe gives only once.
    """
    if backend not in BACKENDS:
        raise UsageError(f"--mix-lm-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    check_readable(path)
    with spooled(path) as readable:
        return _load_file(readable, backend, note)


def _load_file(path: str, backend: str, note: Callable[[str], None]):
    binary = is_kenlm_binary(path)
    kenlm = kenlm_module()
    if backend == "python" and binary:
        raise UsageError(f"{display_name(path)} is a KenLM binary model: only the kenlm backend reads it")
    if backend == "kenlm" or binary or (backend == "auto" and kenlm is not None):
        if kenlm is None:
            what = "a KenLM binary model" if binary else "--mix-lm-backend kenlm"
            raise UsageError(f"{display_name(path)}: {what} {KENLM_MISSING}")
        try:
            return KenlmModel(kenlm, path)
        except DataError as exc:
            if backend == "kenlm" or binary:
                raise
            model = read_arpa(path)  # its own error, one line, when the file is bad for both
            note(f"{exc}; read by the ARPA reader instead")
            return model
    return read_arpa(path)


class KenlmModel:
    """``kenlm.Model`` behind the interface of :class:`~rnnlm_cli.score.arpa.ArpaModel`."""

    def __init__(self, kenlm, path: str) -> None:
        self._kenlm = kenlm
        try:
            self._model = kenlm.Model(os.fspath(path))
        except (OSError, RuntimeError) as exc:  # kenlm raises OSError for files it cannot parse
            raise DataError(f"{display_name(path)}: KenLM cannot read it ({str(exc).splitlines()[0]})") from None
        self.path = path
        # KenLM stands in log10 -100 for a missing <unk> (its unigram score with no context).
        self._unk_missing = self._model.score("<unk>", bos=False, eos=False) == _MISSING_UNK
        # The mix asks for word after word of a line, each time with the previous context
        # plus one word: the state that ended the last call is the next call's start.
        self._last_context: tuple[str, ...] | None = None
        self._last_state = None

    @property
    def order(self) -> int:
        return self._model.order

    @property
    def has_unk(self) -> bool:
        return True  # KenLM always has <unk>, listed or not

    def __contains__(self, word: object) -> bool:
        return word in self._model

    def logprob(self, word: str, context: Sequence[str]) -> float:
        """log10 P(word | context); ``context`` oldest first, only its last ``order - 1`` words count."""
        keep = self.order - 1
        recent = tuple(context[-keep:]) if keep else ()
        if self._unk_missing and word not in self._model:
            self._last_context = None  # the next word's context holds this one: no state to reuse
            return -math.inf
        state = self._state_after(recent)
        out = self._kenlm.State()
        score = self._model.BaseScore(state, word, out)
        self._last_context, self._last_state = recent + (word,), out
        return score

    def sentence_logprobs(self, words: Sequence[str]) -> list[float]:
        """log10 probabilities of each word of one line and then ``</s>``, starting after ``<s>``."""
        scores = [score for score, _, _ in self._model.full_scores(" ".join(words), bos=True, eos=True)]
        if self._unk_missing:
            scores = [-math.inf if word not in self._model else score for word, score in zip([*words, EOS], scores)]
        return scores

    def _state_after(self, recent: tuple[str, ...]):
        keep = self.order - 1
        if keep and self._last_context is not None and self._last_context[-keep:] == recent[-keep:] and \
                (len(recent) == keep or self._last_context == recent):
            return self._last_state
        state, out = self._kenlm.State(), self._kenlm.State()
        words = list(recent)
        if words and words[0] == BOS:
            self._model.BeginSentenceWrite(state)
            words = words[1:]
        else:
            self._model.NullContextWrite(state)
        for word in words:
            if word == EOS:
                continue
            self._model.BaseScore(state, word, out)
            state, out = out, state
        return state
