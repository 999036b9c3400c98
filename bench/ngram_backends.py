"""The n-gram model behind ``--mix-lm``: load time, memory and speed, KenLM beside the ARPA reader.

    python3 bench/ngram_backends.py --text .data/wikitext-2/train.txt .data/wikitext-2/valid.txt \\
        .data/wikitext-2/test.txt --order 6 --score .data/wikitext-2/test.txt

First an ARPA model is built from --text: every n-gram up to --order that occurs, with
absolutely discounted probabilities and back-off weights (a model of the size a real one of
that text has, not a tuned one), written once to --arpa (kept: later runs reuse it). Then
each backend, in a fresh process so that its memory is its own, loads the model and scores
the words of --score as ``--mix-lm`` does (each word with the line's words before it);
printed: n-grams, load seconds, peak RSS, words/s, and the largest difference between the
two backends' scores. The ARPA reader is the baseline; the kenlm module must be installed
(``pip install 'rnnlm[kenlm]'``) for the second row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DISCOUNT = 0.5


def build_arpa(texts: list[str], order: int, out: str) -> int:
    """Write every n-gram of ``texts`` up to ``order`` as an ARPA back-off model; the n-gram count."""
    counts = [Counter() for _ in range(order)]
    for path in texts:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                words = ["<s>", *line.split(), "</s>"]
                for n in range(1, order + 1):
                    table = counts[n - 1]
                    for i in range(len(words) - n + 1):
                        table[tuple(words[i:i + n])] += 1
    counts[0][("<unk>",)] = 1
    # c(h) and the number of distinct words after h, for the discounted estimates.
    context_total: dict[tuple, int] = defaultdict(int)
    context_types: dict[tuple, int] = defaultdict(int)
    for table in counts[1:]:
        for gram, c in table.items():
            context_total[gram[:-1]] += c
            context_types[gram[:-1]] += 1
    unigram_total = sum(counts[0].values())
    temp = out + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n, table in enumerate(counts, start=1):
            f.write(f"ngram {n}={len(table)}\n")
        for n, table in enumerate(counts, start=1):
            f.write(f"\n\\{n}-grams:\n")
            for gram, c in table.items():
                if n == 1:
                    logp = -99.0 if gram == ("<s>",) else math.log10(c / unigram_total)
                else:
                    logp = math.log10((c - DISCOUNT) / context_total[gram[:-1]]) if c > DISCOUNT else -99.0
                line = f"{logp:.6f}\t{' '.join(gram)}"
                if n < order and gram in context_types:
                    backoff = DISCOUNT * context_types[gram] / context_total[gram]
                    line += f"\t{math.log10(backoff):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    os.replace(temp, out)
    return sum(len(table) for table in counts)


def peak_rss_mib() -> float:
    """This process' peak resident memory since it started its program (VmHWM): unlike
    getrusage's ru_maxrss, not inherited from a parent that forked it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(backend: str, arpa: str, score: str, words: int, dump: str) -> None:
    """In this (fresh) process: load with ``backend``, score, print one JSON line."""
    from rnnlm_cli.score.ngram_models import load_ngram

    start = time.perf_counter()
    model = load_ngram(arpa, backend)
    loaded = time.perf_counter() - start
    scores = []
    start = time.perf_counter()
    with open(score, encoding="utf-8") as handle:
        for line in handle:
            history = ["<s>"]
            for word in [*line.split(), "</s>"]:
                scores.append(model.logprob(word, history))
                history.append(word)
                del history[:-max(model.order - 1, 1)]
            if len(scores) >= words:
                break
    seconds = time.perf_counter() - start
    with open(dump, "w") as f:
        json.dump(scores, f)
    peak_mib = peak_rss_mib()
    print(json.dumps({"backend": backend, "load_s": loaded, "peak_mib": peak_mib, "words": len(scores),
                      "words_per_s": len(scores) / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", nargs="+", help="Texts the ARPA model is built from.")
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--arpa", default="runs/bench/ngram.arpa", help="The model: built here when missing.")
    parser.add_argument("--score", required=True, help="Text whose words are scored.")
    parser.add_argument("--words", type=int, default=200_000, help="Words (and line ends) scored.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.arpa, args.score, args.words, args.dump)
        return
    if not os.path.exists(args.arpa):
        if not args.text:
            parser.error("--arpa does not exist: give --text to build it")
        os.makedirs(os.path.dirname(os.path.abspath(args.arpa)), exist_ok=True)
        start = time.perf_counter()
        total = build_arpa(args.text, args.order, args.arpa)
        print(f"built {args.arpa}: {total:,} n-grams up to order {args.order} in {time.perf_counter() - start:.0f} s, "
              f"{os.path.getsize(args.arpa) / 2**20:,.0f} MiB", file=sys.stderr)
    with open(args.arpa, encoding="utf-8") as f:
        header = [line for line in (next(f) for _ in range(12)) if line.startswith("ngram ")]
    ngrams = sum(int(line.split("=")[1]) for line in header)
    print(f"model {args.arpa}: {ngrams:,} n-grams, order {len(header)}; scoring {args.score}")
    print(f"{'backend':<10} {'load s':>8} {'peak MiB':>9} {'words/s':>10}")
    rows, dumps = [], {}
    for backend in ("python", "kenlm"):
        dump = tempfile.mktemp(suffix=f".{backend}.json")
        result = subprocess.run([sys.executable, __file__, "--arpa", args.arpa, "--score", args.score,
                                 "--words", str(args.words), "--measure", backend, "--dump", dump],
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{backend:<10} failed: {result.stderr.strip().splitlines()[-1]}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        with open(dump) as f:
            dumps[backend] = json.load(f)
        os.remove(dump)
        print(f"{backend:<10} {row['load_s']:>8.1f} {row['peak_mib']:>9,.0f} {row['words_per_s']:>10,.0f}")
    if len(dumps) == 2:
        a, b = dumps["python"], dumps["kenlm"]
        worst = max(abs(x - y) for x, y in zip(a, b))
        print(f"largest difference over {len(a):,} words: {worst:.2e} (log10)")


if __name__ == "__main__":
    main()
