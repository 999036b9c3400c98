"""Test perplexity by epochs and dropout: the measurements behind the fitted dropout.

    python3 bench/regularization_grid.py --data .data/ptb1m --epochs 3 9 18 --dropout 0 0.1 0.3 0.5 \\
        --out runs/regularization

Each (epochs, dropout) pair is one ``rnnlm train --preset wt2-cpu-quick`` run of exactly that
many epochs (``--max-time 0 --max-steps 0``: the cosine schedule anneals over the epochs), then
``rnnlm eval`` on the test split. The budget is work, not time, so the figures do not depend on
the machine's load: ``--jobs`` runs go at once, each on ``--threads`` threads. The table gives
the test perplexity (stream) of each pair and marks each row's best; ``rnnlm_cli/train/
regularization_fit.py`` holds the best rate of each row as ``DROPOUT_BY_EPOCHS``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys


def run_pair(data: str, out: str, epochs: int, dropout: float, threads: int, extra: list[str]) -> dict:
    stem = os.path.join(out, f"e{epochs}-d{dropout:g}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    train = [sys.executable, "-m", "rnnlm_cli", "train", os.path.join(data, "train.txt"),
             "--valid", os.path.join(data, "valid.txt"), "--out", f"{stem}.pt", "--preset", "wt2-cpu-quick",
             "--max-time", "0", "--max-steps", "0", "--epochs", str(epochs), "--dropout", f"{dropout:g}",
             "--json", *extra]
    with open(f"{stem}.train.log", "w", encoding="utf-8") as log:
        trained = subprocess.run(train, stdout=subprocess.PIPE, stderr=log, text=True, env=env, check=True)
    score = [sys.executable, "-m", "rnnlm_cli", "eval", f"{stem}.pt", os.path.join(data, "test.txt"), "--json"]
    scored = subprocess.run(score, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, check=True)
    result = json.loads(trained.stdout)
    return {"epochs": epochs, "dropout": dropout, "valid_ppl": result["best_valid_ppl"],
            "test_ppl": json.loads(scored.stdout)["ppl"], "tokens_per_second": result["tokens_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 9, 18])
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="threads of each run")
    parser.add_argument("--out", required=True, help="folder for the models, logs and results.json")
    parser.add_argument("extra", nargs="*", help="more options for every run (after --)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    pairs = [(epochs, dropout) for epochs in args.epochs for dropout in args.dropout]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda pair: run_pair(args.data, args.out, *pair, args.threads, args.extra), pairs))
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    print(f"{args.data}: test ppl (stream) by epochs and --dropout; * marks each row's best")
    print("| epochs | " + " | ".join(f"dropout {d:g}" for d in args.dropout) + " |")
    print("|---|" + "---|" * len(args.dropout))
    for epochs in args.epochs:
        row = {r["dropout"]: r["test_ppl"] for r in results if r["epochs"] == epochs}
        best = min(row.values())
        cells = [f"{row[d]:.1f}{'*' if row[d] == best else ''}" for d in args.dropout]
        print(f"| {epochs} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
