"""Nights of cron retraining over a growing real corpus, with and without --grow-vocab.

    python3 bench/cron_nights.py --train ../shared/data/wikitext-2/train.txt \
        --dev ../shared/data/wikitext-2/valid.txt --nights 4 --max-time 60 --out runs/nights

The corpus's lines are cut into ``--nights`` equal parts, in order (WikiText's articles, so
each night brings new topics and names); night k's ``corpus/all.txt`` holds the first k
parts. Each night runs ``examples/cron/retrain.sh`` as cron would, with ``--max-time`` and
any further options, once per policy in its own folder:

* ``grow``: the script as shipped (``--grow-vocab 0.01``);
* ``frozen``: the same with the vocabulary of the first night kept (``--grow-vocab 1``, a share
  the corpus never reaches).

Printed per night and policy: the share of the corpus's words outside the vocabulary of the
model in place, what the night did with the vocabulary, the vocabulary's size, the share of
``--dev`` words outside it, whether the night promoted, and the promotion's line. At the end
each policy's ``models/current.pt`` is scored on ``--test`` (when given) with ``rnnlm eval
--json`` (OOV words left out, SRILM's way) and ``--unk`` (scored as ``<unk>``), with its OOV
rate there: a frozen vocabulary's perplexity without ``--unk`` looks better only because it
leaves more words out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "cron", "retrain.sh")
POLICIES = {"grow": [], "frozen": ["--grow-vocab", "1"]}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="the corpus whose lines the nights add, in order")
    parser.add_argument("--dev", required=True, help="the fixed validation text promotion scores on")
    parser.add_argument("--test", help="text to score each policy's final model on")
    parser.add_argument("--nights", type=int, default=4)
    parser.add_argument("--max-time", type=float, default=60.0, help="each night's --max-time")
    parser.add_argument("--out", default="runs/nights")
    parser.add_argument("options", nargs="*", help="more options for rnnlm train (after --)")
    return parser.parse_args()


def rnnlm_command() -> list[str]:
    return [sys.executable, "-m", "rnnlm_cli"]


def night(folder: str, args: argparse.Namespace, extra: list[str]) -> tuple[int, str, float]:
    env = {**os.environ, "RNNLM": " ".join(rnnlm_command())}
    started = time.monotonic()
    done = subprocess.run(["sh", SCRIPT, folder, "--max-time", str(args.max_time), *extra, *args.options],
                          capture_output=True, text=True, env=env)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def found(pattern: str, text: str, default: str = "-") -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else default


def row(number: int, policy: str, code: int, output: str, seconds: float) -> dict:
    action = ("grown" if "vocabulary grown" in output else "kept" if "vocabulary kept" in output else "learned")
    return {
        "night": number, "policy": policy, "exit": code, "seconds": round(seconds),
        "corpus_oov_before": found(r"([\d.]+%) of the corpus's words are outside", output),
        "vocabulary": action,
        "size": found(r"read as <unk> by the ([\d,]+)-entry vocabulary", output),
        "dev_oov": found(r"dev\.txt ([\d.]+%) of", output),
        "promoted": "yes" if "is the new model" in output else "no",
        "promotion": found(r"\n((?:not )?promoted: [^\n]*)", output),
    }


def score(model: str, test: str) -> dict:
    figures = {}
    for name, flags in (("ppl", []), ("ppl_unk", ["--unk"])):
        done = subprocess.run([*rnnlm_command(), "eval", model, test, "--json", *flags],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        figures[name] = result.get("ppl")
        if not flags:  # without --unk the OOVs are counted, not scored
            figures["oov_rate"] = result["oovs"] / max(result["words"], 1)
    return figures


def main() -> None:
    args = parse()
    with open(args.train, encoding="utf-8") as handle:
        lines = handle.readlines()
    share = -(-len(lines) // args.nights)
    rows = []
    for number in range(1, args.nights + 1):
        for policy, extra in POLICIES.items():
            folder = os.path.join(args.out, policy)
            os.makedirs(os.path.join(folder, "corpus"), exist_ok=True)
            with open(os.path.join(folder, "corpus", "all.txt"), "a", encoding="utf-8") as handle:
                handle.writelines(lines[(number - 1) * share: number * share])
            if number == 1:
                with open(args.dev, encoding="utf-8") as source, \
                        open(os.path.join(folder, "corpus", "dev.txt"), "w", encoding="utf-8") as dev:
                    dev.write(source.read())
            code, output, seconds = night(folder, args, extra)
            with open(os.path.join(folder, f"night{number}.log"), "w", encoding="utf-8") as log:
                log.write(output)
            rows.append(row(number, policy, code, output, seconds))
            print(json.dumps(rows[-1]), flush=True)
    print("| night | policy | corpus OOV vs model in place | vocabulary | entries | dev OOV | promoted | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['night']} | {r['policy']} | {r['corpus_oov_before']} | {r['vocabulary']} | {r['size']} | "
              f"{r['dev_oov']} | {r['promoted']} | {r['seconds']} |")
    if args.test:
        for policy in POLICIES:
            model = os.path.join(args.out, policy, "models", "current.pt")
            print(policy, json.dumps(score(model, args.test)), flush=True)


if __name__ == "__main__":
    main()
