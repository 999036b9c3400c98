"""Peak anonymous memory of `rnnlm tokenize` + `rnnlm train` against corpus size.

Builds corpora of growing size by repeating a text, then runs the tokenizer and a short
training run on each, sampling the process' RssAnon from /proc (Linux) every 50 ms.
File-backed pages of the memory-mapped token file are not anonymous memory and are not
counted: they are the page cache, which the kernel reclaims at will.

    python3 bench/memory.py --text sample_data/train.txt --copies 10 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_anon_mb(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (peak RssAnon in MiB, wall seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return peak / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default="sample_data/train.txt")
    parser.add_argument("--copies", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    rnnlm = [sys.executable, "-m", "rnnlm_cli"]
    with open(args.text, "rb") as handle:
        text = handle.read()
    print(f"{'corpus MB':>10} {'tokenize peak RssAnon MiB':>26} {'s':>6} {'train peak RssAnon MiB':>23} {'s':>6}")
    with tempfile.TemporaryDirectory() as work:
        for copies in args.copies:
            corpus = os.path.join(work, "corpus.txt")
            with open(corpus, "wb") as handle:
                for _ in range(copies):
                    handle.write(text)
            size = os.path.getsize(corpus) / 1e6
            tok_mem, tok_s = peak_rss_anon_mb(rnnlm + ["tokenize", corpus, "--out", os.path.join(work, "c.tok")])
            train_mem, train_s = peak_rss_anon_mb(rnnlm + [
                "train", os.path.join(work, "c.tok"), "--max-steps", str(args.steps), "--epochs", "1",
                "--out", os.path.join(work, "m.pt"), "--device", "cpu"])
            print(f"{size:>10.0f} {tok_mem:>26.0f} {tok_s:>6.1f} {train_mem:>23.0f} {train_s:>6.1f}")


if __name__ == "__main__":
    main()
