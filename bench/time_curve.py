"""Test perplexity against training seconds: recipes beside a baseline, at the same budgets.

    python3 bench/make_ptb_shaped.py --data .data/wikitext-2 --out .data/ptb10k
    python3 bench/time_curve.py --data .data/ptb10k --budgets 60 134 400 1200 --out runs/curve

Each (configuration, budget) pair is one ``rnnlm train`` command, run as a user would run it:
``--max-time BUDGET`` with no step or epoch limit, so the clock alone ends the run and the
cosine schedule anneals over it. The best checkpoint is then scored on the test split twice,
as a continuous stream and sentence by sentence (``rnnlm eval --context stream|sentence
--json``). Printed: the commands, then one table of tokens/s and test perplexities; ``--png``
draws the curves on a log-time axis. Every model stays in ``--out``, so the figures can be
re-checked and the models rescored (``bench/rescoring_quality.py``).

``--before DIR`` also runs each pair with the rnnlm of another checkout (an earlier release,
``git worktree add DIR v0.2``), at the same time as this one, each process on one of the
machine's threads (``--threads``, default 1): the two runs share one window of the machine's
load, so their figures compare, and the table shows them side by side. Without ``--before``
the runs go one after another with the machine's threads (nothing else should run meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

CONFIGURATIONS = {
    # The CPU recipe: 1x256 LSTM, auto adaptive softmax, Adam + cosine over the time budget.
    "recipe": ["--preset", "wt2-cpu-quick"],
    # The bare command: every option at its default or fitted to the corpus, device and budget.
    "bare": [],
    # rnnlm 0.1's defaults with the full softmax: 2x256 LSTM, 128-wide embeddings, batch 32, Adam at
    # a constant 2e-3.
    "0.1-default": ["--layers", "2", "--hidden", "256", "--emb", "128", "--batch-size", "32",
                    "--adaptive-softmax", "", "--schedule", "constant", "--lr", "0.002", "--dropout", "0.2"],
}
BEFORE = " (before)"
"""Added to a configuration's name for the runs of the ``--before`` checkout."""


def rnnlm(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnlm_cli", *args]


def start(command: list[str], log_path: str, code: str | None, threads: int | None) -> tuple[subprocess.Popen, object]:
    """Start ``command`` with the rnnlm of checkout ``code`` (None: this one) on ``threads`` threads."""
    shown = " ".join(shlex.quote(a) for a in command[2:]).replace("rnnlm_cli", "rnnlm", 1)
    print(("" if code is None else f"[{code}] ") + "$ " + shown, flush=True)
    env = dict(os.environ)
    if code is not None:
        # -m puts the working folder first on the path, before PYTHONPATH: a run from this
        # checkout would import this checkout's rnnlm whatever PYTHONPATH says.
        env["PYTHONPATH"], env["PYTHONSAFEPATH"] = os.path.abspath(code), "1"
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(log_path, "w", encoding="utf-8")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env), log


def finish(started: tuple[subprocess.Popen, object], log_path: str) -> str:
    """Wait for a started command; its stdout, or exit with its log named when it failed."""
    process, log = started
    out, _ = process.communicate()
    log.close()
    if process.returncode != 0:
        sys.exit(f"failed with exit {process.returncode}; see {log_path}")
    return out


def measure(name: str, budget: float, data: dict[str, str], out: str, codes: list[tuple[str, str | None]],
            threads: int | None) -> list[dict]:
    """Train and score ``name`` at ``budget`` with each (suffix, checkout) of ``codes`` at once."""
    stems = {suffix: os.path.join(out, f"{name}{suffix.replace(' ', '-').replace('(', '').replace(')', '')}-{budget:g}s")
             for suffix, _ in codes}
    began = time.perf_counter()
    training = {suffix: start(rnnlm("train", data["train"], "--valid", data["valid"], "--out", f"{stems[suffix]}.pt",
                                     *CONFIGURATIONS[name], "--max-time", f"{budget:g}", "--max-steps", "0",
                                     "--epochs", "1000", "--json"), f"{stems[suffix]}.train.log", code, threads)
                for suffix, code in codes}
    trained = {suffix: json.loads(finish(run, f"{stems[suffix]}.train.log")) for suffix, run in training.items()}
    wall = time.perf_counter() - began
    results = []
    for suffix, code in codes:
        stem, scores = stems[suffix], {}
        for context in ("stream", "sentence"):
            log = f"{stem}.eval-{context}.log"
            scored = finish(start(rnnlm("eval", f"{stem}.pt", data["test"], "--context", context, "--json"), log,
                                  code, threads), log)
            scores[context] = json.loads(scored)["ppl"]
        result = trained[suffix]
        results.append({"config": name + suffix, "budget": budget, "steps": result["steps"],
                        "epochs": result["epochs"], "seconds": result["seconds"], "wall": wall,
                        "tokens_per_second": result["tokens_per_second"], "valid_ppl": result["best_valid_ppl"],
                        "test_ppl_stream": scores["stream"], "test_ppl_sentence": scores["sentence"],
                        "threads": threads})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 134, 400, 1200], help="seconds of training")
    parser.add_argument("--configs", nargs="+", default=["recipe", "0.1-default"], choices=list(CONFIGURATIONS))
    parser.add_argument("--before", metavar="DIR", help="also run each with the rnnlm of this checkout, side by side")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of each process (default: 1 with --before, else torch's choice)")
    parser.add_argument("--out", help="folder for the models, logs and results.json")
    parser.add_argument("--png", default=None, help="draw the curves here (needs matplotlib)")
    parser.add_argument("--results", nargs="+", default=None, metavar="JSON",
                        help="train nothing: print (and draw) the results.json files of earlier runs, later "
                             "files replacing earlier ones' (configuration, budget) pairs")
    args = parser.parse_args()

    if args.results:
        merged = {}
        for path in args.results:
            with open(path, encoding="utf-8") as handle:
                merged.update({(r["config"], r["budget"]): r for r in json.load(handle)})
        order = {name: index for index, name in enumerate(CONFIGURATIONS)}
        report(sorted(merged.values(), key=lambda r: (order.get(r["config"].removesuffix(BEFORE), 99),
                                                      r["config"], r["budget"])), args)
        return
    if not args.out:
        parser.error("--out is needed to train")
    os.makedirs(args.out, exist_ok=True)
    data = {split: os.path.join(args.data, f"{split}.txt") for split in ("train", "valid", "test")}
    codes = [("", None)] + ([(BEFORE, args.before)] if args.before else [])
    threads = args.threads if args.threads is not None else (1 if args.before else None)
    results = []
    for name in args.configs:
        for budget in args.budgets:
            results.extend(measure(name, budget, data, args.out, codes, threads))
            with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=1)

    report(results, args)


def report(results: list[dict], args) -> None:
    print(f"\n{args.data}: test perplexity after BUDGET seconds of training (one run each, this machine; "
          "runs marked (before) ran at the same time as the one above them, one thread each)")
    print("| configuration | budget | steps | epochs | tokens/s | wall s | valid ppl | test ppl stream | sentence |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['budget']:g} s | {r['steps']:,} | {r['epochs']:.2f} | {r['tokens_per_second']:,.0f} "
              f"| {r['wall']:.0f} | {r['valid_ppl']:.1f} | {r['test_ppl_stream']:.1f} | {r['test_ppl_sentence']:.1f} |")
    if args.png:
        draw(results, args.png, args.data)


def draw(results: list[dict], path: str, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5.5, 3.6), dpi=100)
    for name in dict.fromkeys(r["config"] for r in results):
        points = [(r["budget"], r["test_ppl_stream"]) for r in results if r["config"] == name]
        axes.plot(*zip(*points), marker="o", label=name)
        for budget, ppl in points:
            axes.annotate(f"{ppl:.0f}", (budget, ppl), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    budgets = sorted({r["budget"] for r in results})
    axes.set_xticks(budgets, [f"{b:g}" for b in budgets])
    threads = {r.get("threads") for r in results}
    axes.set_xlabel("training seconds (" + ("the machine's threads" if threads == {None} else
                                            f"{'/'.join(str(t) for t in sorted(threads, key=str))} thread(s) a run") + ")")
    axes.set_ylabel("test perplexity (stream)")
    axes.set_title(os.path.basename(os.path.normpath(data)), fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"curves drawn in {path}")


if __name__ == "__main__":
    main()
