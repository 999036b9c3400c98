"""A Penn-Treebank-shaped corpus from WikiText-2: the 10,000 most frequent training words kept,
every other word (in train, valid and test) written as ``<unk>``.

    python3 bench/make_ptb_shaped.py --data .data/wikitext-2 --out .data/wt2-ptb10k

PTB as language modelling uses it (Mikolov et al., 2010) has a 10,000-word vocabulary with
``<unk>`` already in the text; this gives a corpus of that shape and about WikiText-2's size,
so presets and defaults can be tried on a vocabulary they were not tuned on. WikiText-2's own
``<unk>`` counts as a word (it is among the most frequent). Ties in frequency are broken
alphabetically, as ``rnnlm``'s word tokenizer does. Lines are kept as they are, blank ones too.

``--ptb-text`` also writes the text the way PTB's is written, which makes a corpus as hard to
predict as PTB rather than WikiText's easier punctuated text: lowercase, one sentence a line,
punctuation dropped, numbers written ``N``, WikiText's ``@-@`` joins undone (``role-playing``),
headings dropped; ``--train-words`` then cuts the training split to PTB's 887,521 words.

    python3 bench/make_ptb_shaped.py --data .data/wikitext-2 --out .data/ptb-text --ptb-text --train-words 887521
"""

from __future__ import annotations

import argparse
import collections
import os
import re

SPLITS = ("train", "valid", "test")
SENTENCE_ENDS = {".", "?", "!"}
NUMBER = re.compile(r"^[0-9][0-9.,]*$")
WORDLIKE = re.compile(r"[a-z0-9$&']")
"""PTB keeps ``$``, ``&`` and the clitics ('s, n't); a token with none of these is punctuation."""


def ptb_sentences(line: str) -> list[list[str]]:
    """One WikiText line as PTB-style sentences (a heading or blank line gives none)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("= "):
        return []
    joined = re.sub(r" @([-,.])@ ", r"\1", stripped).lower()
    sentences, current = [], []
    for token in joined.split():
        if token in SENTENCE_ENDS:
            if current:
                sentences.append(current)
            current = []
        elif token == "<unk>":
            current.append(token)
        elif NUMBER.match(token):
            current.append("N")
        elif WORDLIKE.search(token):
            current.append(token)
    if current:
        sentences.append(current)
    return sentences


def ptb_text(source_path: str, target_path: str, words: int | None) -> None:
    """Rewrite a WikiText split as PTB-style text, stopping after ``words`` words."""
    written = 0
    with open(source_path, encoding="utf-8") as source, open(target_path, "w", encoding="utf-8") as target:
        for line in source:
            for sentence in ptb_sentences(line):
                if words is not None and written + len(sentence) > words:
                    return
                target.write(" " + " ".join(sentence) + " \n")
                written += len(sentence)


def vocabulary(train_path: str, size: int) -> set[str]:
    counts: collections.Counter[str] = collections.Counter()
    with open(train_path, encoding="utf-8") as handle:
        for line in handle:
            counts.update(line.split())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word for word, _ in ranked[:size]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt and test.txt")
    parser.add_argument("--out", required=True, help="folder to write the three files into")
    parser.add_argument("--words", type=int, default=10_000, help="words kept (default: 10000)")
    parser.add_argument("--ptb-text", action="store_true", help="write the text as PTB's is written")
    parser.add_argument("--train-words", type=int, default=None, help="cut the training split to this many words")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    source_folder = args.data
    if args.ptb_text:
        source_folder = os.path.join(args.out, "ptb-text")
        os.makedirs(source_folder, exist_ok=True)
        for split in SPLITS:
            limit = args.train_words if split == "train" else None
            ptb_text(os.path.join(args.data, f"{split}.txt"), os.path.join(source_folder, f"{split}.txt"), limit)
    kept = vocabulary(os.path.join(source_folder, "train.txt"), args.words)
    for split in SPLITS:
        words = unknown = 0
        with open(os.path.join(source_folder, f"{split}.txt"), encoding="utf-8") as source, \
                open(os.path.join(args.out, f"{split}.txt"), "w", encoding="utf-8") as target:
            for line in source:
                tokens = line.split()
                mapped = [token if token in kept else "<unk>" for token in tokens]
                words += len(tokens)
                unknown += sum(token == "<unk>" for token in mapped)
                target.write((" " + " ".join(mapped) + " \n") if tokens else line)
        print(f"{split}: {words:,} words, {unknown / max(words, 1):.1%} <unk>")
    print(f"vocabulary: {len(kept):,} words (with <unk>) in {args.out}")


if __name__ == "__main__":
    main()
