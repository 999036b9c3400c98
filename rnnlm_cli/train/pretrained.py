"""Outside knowledge about words: pretrained vectors for the embeddings, synonym pairs.

A vectors file is word2vec/GloVe text: ``word v1 ... vD`` a line, with an optional
``V D`` header line first. A synonyms file holds two words a line. Both are matched
against the tokenizer's pieces; words outside the vocabulary are counted and skipped.
"""

from __future__ import annotations

import torch

from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.text.reading import iter_lines


def vocabulary(tokenizer) -> dict[str, int]:
    """Piece -> id over the whole vocabulary."""
    return {tokenizer.piece(i): i for i in range(tokenizer.vocab_size)}


def load_embeddings(path: str, tokenizer, weight: torch.Tensor) -> str:
    """Copy the vectors of vocabulary words into ``weight`` (V, E); a note on the coverage.

    A file whose vectors all differ from --emb is a usage error (give --emb); vectors that
    differ from each other, or hold NaN, infinities or values beyond the weights' dtype,
    are bad data.
    """
    lookup = vocabulary(tokenizer)
    dim = weight.shape[1]
    seen: set[int] = set()
    vectors = 0
    with torch.no_grad():
        for number, line in enumerate(iter_lines(path), start=1):
            # At most dim + 2 fields: a line of junk is not split into a million strings.
            fields = line.split(None, dim + 1)
            if not fields or (number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields)):
                continue  # the 'V D' header
            word, values = fields[0], fields[1:]
            if len(values) != dim:
                found = len(line.split()) - 1
                if vectors:
                    raise DataError(f"{path}:{number}: the vector of {word!r} has {found} dimensions, the ones "
                                    f"before it {dim}; every line must be 'word v1 ... v{dim}'")
                raise UsageError(f"{path}:{number}: vectors have {found} dimensions but --emb is "
                                 f"{dim}; give --emb {found}")
            vectors += 1
            index = lookup.get(word)
            if index is None:
                continue
            try:
                row = torch.tensor([float(v) for v in values], dtype=weight.dtype)
            except ValueError:
                raise DataError(f"{path}:{number}: not a number in the vector of {word!r}") from None
            if not bool(torch.isfinite(row).all()):
                raise DataError(f"{path}:{number}: the vector of {word!r} holds NaN, infinite or too large "
                                f"values for {str(weight.dtype).replace('torch.', '')}")
            weight[index] = row
            seen.add(index)
    vocab = len(lookup)
    return f"initialised {len(seen)} of {vocab} vocabulary entries ({100 * len(seen) / vocab:.1f}%) from {path}"


def freeze_embeddings(model) -> None:
    """Keep the input embeddings fixed; refused when the softmax shares them."""
    if model.config.tied:
        raise UsageError("--freeze-embeddings with --tied would freeze the softmax too; use --untied")
    model.embedding.weight.requires_grad_(False)


def load_synonyms(path: str, tokenizer) -> tuple[torch.Tensor, str]:
    """Pairs (P, 2) of token ids from a file of word pairs, and a note on how many were usable."""
    lookup = vocabulary(tokenizer)
    pairs: list[tuple[int, int]] = []
    total = 0
    for number, line in enumerate(iter_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: expected two words, got {len(fields)}")
        total += 1
        if fields[0] in lookup and fields[1] in lookup:
            pairs.append((lookup[fields[0]], lookup[fields[1]]))
    note = f"synonyms: {len(pairs)} of {total} pairs in {path} have both words in the vocabulary"
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2), note
