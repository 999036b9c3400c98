"""What ``rnnlm eval FILE`` prints: one output per layout, in :data:`TEXT_OUTPUTS`.

An output hears of the text as it is scored (:meth:`TextOutput.on_words` with the words of
each piece of a line, when it :attr:`~TextOutput.wants_words`, then
:meth:`~TextOutput.on_sentence` at each line's end) and writes what goes out per line at
once; at the end, :meth:`~TextOutput.summary` gives what follows on stdout and what goes to
the log. :attr:`rnnlm_cli.score.eval_request.EvalRequest.text_output` names the layout the
flags ask for. A new layout is one class here and one entry in :data:`TEXT_OUTPUTS`.

In the sentence context SRILM's layouts (the totals, ``--debug 1|2``, ``--json``) skip blank
lines as ``ngram -ppl`` does (:attr:`~TextOutput.skips_blank_lines`); the layouts of one answer
per input line answer a blank line too, as the sentence ``</s>`` alone (KenLM's ``query``), so
``paste`` keeps each line beside its answer.

(``--nbest`` prints through :mod:`rnnlm_cli.score.nbest_outputs`, ``--pairs`` through
:func:`rnnlm_cli.score.formats.pairs_lines`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from rnnlm_cli.json_text import json_line
from rnnlm_cli.score.formats import KenlmTotals, WordLines, kenlm_entries, query_entries, query_total, totals_lines


@dataclass
class Summary:
    """What an output prints once the text is scored."""

    stdout: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class TextOutput:
    """SRILM's two summary lines (``file NAME: ...``, ``... ppl= ...``): ``rnnlm eval``'s default."""

    wants_words = False
    """Whether :meth:`on_words` must be called (collecting words costs time on a long text)."""
    flushes = False
    """Whether each line's answer must reach the reader at once (a coprocess waits for it)."""
    skips_blank_lines = True
    """Whether the sentence context skips blank lines, as SRILM's ``ngram -ppl`` does: a layout
    that answers every input line must not, or its answers would slip off their lines."""

    def __init__(self, out: TextIO, vocabulary_ids: dict[str, int] | None = None) -> None:
        self.out = out
        self.progress = None
        """Something with ``update(count)``, told of each line scored."""

    def on_words(self, text: str, words: list, ends_line: bool) -> None:
        """The words (:class:`~rnnlm_cli.score.word_scoring.WordScore`) of one piece of a line, scored."""

    def on_sentence(self, count: int, score: float) -> None:
        """Line ``count`` ended with log10 score ``score``."""
        if self.progress is not None:
            self.progress.update(count)
        self.line_done(score)
        if self.flushes:
            self.out.flush()

    def line_done(self, score: float) -> None:
        """What this layout writes for a line, once it is scored."""

    def summary(self, result, name: str) -> Summary:
        return Summary(stdout=totals_lines(result, name=name))


class LineWords(TextOutput):
    """A layout that writes each line's words: it collects them until the line ends."""

    wants_words = True

    def __init__(self, out: TextIO, vocabulary_ids: dict[str, int] | None = None) -> None:
        super().__init__(out, vocabulary_ids)
        self.text: list[str] = []
        self.words: list = []

    def on_words(self, text: str, words: list, ends_line: bool) -> None:
        self.text.append(text)
        self.words.extend(words)

    def on_sentence(self, count: int, score: float) -> None:
        super().on_sentence(count, score)
        self.text, self.words = [], []

    def line_totals(self):
        from rnnlm_cli.score.evaluate import Totals

        totals = Totals()
        totals.add(self.words)
        return totals


class SrilmDebug(LineWords):
    """``--debug 1``: each sentence with its totals, then SRILM's summary (the file's totals)."""

    def line_done(self, score: float) -> None:
        self.out.write("\n".join(["".join(self.text), *self.word_lines(), *totals_lines(self.line_totals()), ""]) + "\n")

    def word_lines(self) -> list[str]:
        return []


class SrilmWordDebug(SrilmDebug):
    """``--debug 2``: each sentence, a ``p( word | context ...)`` line per word, and its totals."""

    def __init__(self, out: TextIO, vocabulary_ids: dict[str, int] | None = None) -> None:
        super().__init__(out, vocabulary_ids)
        self._lines = WordLines()  # remembers the context across a line's pieces

    def word_lines(self) -> list[str]:
        return self._lines.lines(self.words)


class Json(TextOutput):
    """``--json``: one object, the totals and what reading the text found."""

    def summary(self, result, name: str) -> Summary:
        return Summary(stdout=[json_line(result.to_dict())])


class PerSentence(TextOutput):
    """``--per-sentence``: one log10 score per input line, in order, and nothing else on stdout."""

    skips_blank_lines = False

    def line_done(self, score: float) -> None:
        self.out.write(f"{score:.6f}\n")

    def summary(self, result, name: str) -> Summary:
        return Summary()


class QueryScores(PerSentence):
    """``--query --per-sentence``: each line's score as soon as it is read; the totals to the log."""

    flushes = True

    def summary(self, result, name: str) -> Summary:
        return Summary(log=totals_lines(result, name=name))


class Query(LineWords):
    """``--query``: each line answered as soon as it is read, ``word=log10`` fields and the line's
    total; the totals to the log."""

    flushes = True
    skips_blank_lines = False

    def line_done(self, score: float) -> None:
        self.out.write("\t".join(query_entries(self.words) + [query_total(self.line_totals(), self.words)]) + "\n")

    def summary(self, result, name: str) -> Summary:
        return Summary(log=totals_lines(result, name=name))


class KenlmQuery(LineWords):
    """``--query --format kenlm``: KenLM's ``query`` layout, ``word=ID ORDER log10`` fields, and its
    perplexity summary on stdout."""

    flushes = True
    skips_blank_lines = False

    def __init__(self, out: TextIO, vocabulary_ids: dict[str, int] | None = None) -> None:
        super().__init__(out, vocabulary_ids)
        if vocabulary_ids is None:
            raise ValueError("KenLM's layout prints vocabulary ids: give the model's")
        self._ids = vocabulary_ids
        self._totals = KenlmTotals()

    def line_done(self, score: float) -> None:
        entries = kenlm_entries(self.words, self._ids.__getitem__)
        self.out.write("\t".join(entries + [self._totals.add(self.words)]) + "\n")

    def summary(self, result, name: str) -> Summary:
        return Summary(stdout=self._totals.summary())


TEXT_OUTPUTS: dict[str, type[TextOutput]] = {
    "srilm": TextOutput,
    "debug": SrilmDebug,
    "debug-words": SrilmWordDebug,
    "json": Json,
    "per-sentence": PerSentence,
    "query": Query,
    "query-scores": QueryScores,
    "kenlm": KenlmQuery,
}
"""Layout name -> its output."""
