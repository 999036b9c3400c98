"""A Penn-Treebank-shaped corpus from WikiText-2: the 10,000 most frequent training words kept,
every other word (in train, valid and test) written as ``<unk>``.

    python3 bench/make_ptb_shaped.py --data .data/wikitext-2 --out .data/wt2-ptb10k

PTB as language modelling uses it (Mikolov et al., 2010) has a 10,000-word vocabulary with
``<unk>`` already in the text; this gives a corpus of that shape and about WikiText-2's size,
so presets and defaults can be tried on a vocabulary they were not tuned on. WikiText-2's own
``<unk>`` counts as a word (it is among the most frequent). Ties in frequency are broken
alphabetically, as ``rnnlm``'s word tokenizer does. Lines are kept as they are, blank ones too.
"""

from __future__ import annotations

import argparse
import collections
import os

SPLITS = ("train", "valid", "test")


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
    args = parser.parse_args()

    kept = vocabulary(os.path.join(args.data, "train.txt"), args.words)
    os.makedirs(args.out, exist_ok=True)
    for split in SPLITS:
        words = unknown = 0
        with open(os.path.join(args.data, f"{split}.txt"), encoding="utf-8") as source, \
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
