"""The speed of ``rnnlm eval --tune``'s search, once every hypothesis is scored: seconds for a
grid over random scores of a set of a given size, beside the brute-force loop a user writes
(every point, every list, Python ``max``), on the first lists only, scaled to the whole set.

    python3 bench/tune_speed.py --hypotheses 5000 --per-list 10

Rows: the LM weight x word penalty grid alone (21 x 21 by default), with the backward weight
(x 11), and with the backward and mixture weights (x 121). Each prints the points searched,
wall seconds, points per second, and the peak resident memory (RSS) of the process so far.
The search is exact (it is checked against such a loop in tests/score/test_tuning.py); this
only times it.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from rnnlm_cli.score.nbest import combined
from rnnlm_cli.score.tuning import SHARES, Axes, ScoredLists, lm_weight_axis, penalty_axis, search


def random_set(hypotheses: int, per_list: int, seed: int = 0) -> ScoredLists:
    rng = np.random.default_rng(seed)
    lists = hypotheses // per_list
    starts = np.arange(lists + 1) * per_list
    words = rng.integers(5, 20, size=hypotheses)
    owner = np.repeat(np.arange(hypotheses), words + 1)
    scored = ScoredLists([f"u{i}" for i in range(lists)], starts, -rng.random(hypotheses) * 30, words,
                         rng.integers(0, 6, size=hypotheses), reference_words=int(words.sum()),
                         forward=np.zeros(hypotheses), backward=-rng.random(hypotheses) * 40)
    scored.word_owner = owner
    scored.word_model = -rng.random(len(owner)) * 3
    scored.word_ngram = -rng.random(len(owner)) * 3
    scored.forward = np.bincount(owner, weights=scored.word_model, minlength=hypotheses)
    return scored


def loop_seconds(lists: ScoredLists, points: int, sample_lists: int = 20) -> float:
    """The plain loop over ``sample_lists`` lists at every point, scaled to all lists."""
    start = time.perf_counter()
    for point in range(points):
        weight, penalty = 1.0 + point / points, 0.1
        for index in range(sample_lists):
            begin, end = lists.starts[index], lists.starts[index + 1]
            max(range(begin, end), key=lambda h: combined(lists.acoustic[h], lists.forward[h], weight, penalty,
                                                           int(lists.words[h])))
    return (time.perf_counter() - start) * (len(lists.utterances) / sample_lists)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hypotheses", type=int, default=5000)
    parser.add_argument("--per-list", type=int, default=10)
    parser.add_argument("--points", type=int, default=21)
    args = parser.parse_args()
    lists = random_set(args.hypotheses, args.per_list)
    weights, penalties = lm_weight_axis(4.0, args.points), penalty_axis(2.0, args.points)
    print(f"{args.hypotheses:,} hypotheses in lists of {args.per_list}; grid {args.points} x {args.points}")
    print(f"{'row':34}{'points':>9}{'seconds':>9}{'points/s':>10}{'peak RSS':>10}")
    rows = [("lm weight x penalty", Axes(weights, penalties)),
            ("... x backward weight", Axes(weights, penalties, backward_weights=SHARES)),
            ("... x backward x mixture weight", Axes(weights, penalties, SHARES, SHARES))]
    for label, axes in rows:
        start = time.perf_counter()
        search(lists, axes)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label:34}{axes.size:>9,}{seconds:>9.2f}{axes.size / seconds:>10,.0f}{rss:>8.0f} MB")
    points = len(weights) * len(penalties)
    seconds = loop_seconds(lists, points)
    print(f"{'plain loop, lm weight x penalty':34}{points:>9,}{seconds:>9.2f}{points / seconds:>10,.0f}"
          "  (20 lists timed, scaled)")


if __name__ == "__main__":
    main()
