"""Word errors of n-best hypotheses against reference transcripts.

References are read in Kaldi's ``text`` layout, ``UTT w1 ... wN`` a line (``data/*/text``,
and what ``rnnlm eval --nbest-best`` prints). Errors are counted by jiwer's word alignment
(a Levenshtein distance over words: substitutions + deletions + insertions), one count per
hypothesis, so that any choice of one hypothesis per utterance has the corpus WER
``sum(errors) / reference words``, the figure jiwer gives for the chosen transcripts.
"""

from __future__ import annotations

from collections.abc import Sequence

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.reading import DecodeStats, display_name, iter_lines


def read_references(path: str, strict: bool = False, stats: DecodeStats | None = None) -> dict[str, str]:
    """Utterance id -> its reference words, single-spaced (``""`` for a line with the id alone)."""
    name = display_name(path)
    references: dict[str, str] = {}
    for number, line in enumerate(iter_lines(path, strict, stats), start=1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] in references:
            raise DataError(f"{name}:{number}: utterance {fields[0]!r} is given twice")
        references[fields[0]] = " ".join(fields[1:])
    if not references:
        raise DataError(f"{name}: no references: expected Kaldi's 'UTT w1 ... wN' lines")
    return references


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> list[int]:
    """Substitutions + deletions + insertions of each hypothesis against its reference. Against
    an empty reference every hypothesis word is an insertion (counted here: jiwer before 4.0
    refuses empty references)."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError("one reference per hypothesis")
    errors = [len(hypothesis.split()) for hypothesis in hypotheses]
    aligned = [index for index, reference in enumerate(references) if reference.strip()]
    if aligned:
        output = jiwer.process_words([references[i] for i in aligned], [hypotheses[i] for i in aligned])
        for index, alignment in zip(aligned, output.alignments):
            errors[index] = sum(_chunk_errors(chunk) for chunk in alignment)
    return errors


def _chunk_errors(chunk) -> int:
    if chunk.type == "equal":
        return 0
    if chunk.type == "insert":
        return chunk.hyp_end_idx - chunk.hyp_start_idx
    # A substitution spans as many reference words as hypothesis words; a deletion has no hypothesis words.
    return chunk.ref_end_idx - chunk.ref_start_idx


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """The WER of the transcripts ``hypotheses`` over the corpus: their errors by jiwer's alignment
    over the reference words (what ``jiwer.wer`` gives where every reference has words)."""
    words = sum(len(reference.split()) for reference in references)
    if words == 0:
        raise ValueError("the references hold no words")
    return sum(word_errors(references, hypotheses)) / words
