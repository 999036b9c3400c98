"""Every command line README.md shows runs, and does what the README says it does.

The examples are read from README.md at collection time: each command in a code block
(fenced or indented) that calls ``rnnlm`` (or ``-m rnnlm_cli``) is one test, so an example
added to the README is tested without touching this file. Each runs through ``sh`` in a
fresh folder holding the names the README uses: the sample corpus under ``sample_data/``,
``corpus.txt``, ``test.txt``, ``valid.txt``, and one tiny model (trained once per module)
under every model name (``model.pt``, ``runs/sample/model.pt``, ``models/current.pt``).

Transcript blocks (``$ command`` lines followed by what it printed) are run as such: the
earlier commands of the block first (``echo ... > ex.txt``; ``cat FILE`` writes FILE from
the lines shown under it when it is missing), then each printed line must come out again,
the same text and counts, with the model's own floats in place of the README's (the tiny
model is not the README's model).

The transcripts of ``runs/sample/model.pt`` are the quickstart model's real output: where
``sample_data/quickstart.sh`` has run (CI runs it before the suite) they are run with that
model, and every number must come out as the README prints it (to 0.1%, or 1e-4, or a unit of
its last digit, for another CPU's rounding). Where it has not, a test says so by skipping.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.store.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SAMPLE = ROOT / "sample_data"

# A call of the toolkit: the command, or the module under python / torchrun.
CALL = re.compile(r"(?:^|[\s|;&(])(?:rnnlm|-m rnnlm_cli)\s+(\w+)")
# A crontab entry: five time fields, then the command.
CRON_FIELDS = re.compile(r"^(?:[0-9*/,-]+\s+){5}(?=\S)")
# A leading "cd DIR &&": the example runs in the prepared folder instead.
LEADING_CD = re.compile(r"^cd\s+\S+\s*&&\s*")
TRAIN_CALL = re.compile(r"(?:\brnnlm|-m rnnlm_cli)\s+train\b")
# A number standing alone (not the 1 of "u1-1"); floats have a point or an exponent.
NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")
# Integers in shown output that depend on the model, not on the data.
MODEL_COUNTS = re.compile(r"\(\d+ EM iterations\)")
# Every training example gets a budget of a few steps, whatever its own --epochs or
# --max-time: the README's runs take minutes to hours, and a few steps show that the
# command line is accepted, trains, validates and writes every file it names.
BUDGET = "--max-steps 2"
# The tiny model every example that reads one is given.
TINY = ["--layers", "1", "--emb", "16", "--hidden", "16", "--batch-size", "32", "--bptt", "20",
        "--lr", "0.01", "--max-steps", "60", "--seed", "1", "--device", "cpu", "--amp", "off"]
MODEL_NAMES = ("model.pt", "runs/sample/model.pt", "models/current.pt", "runs/compare/cell=rnn/model.pt",
               "runs/compare/cell=gru/model.pt", "runs/compare/cell=lstm/model.pt",
               *(f"runs/stories/{cell}/seed1234/model.pt" for cell in ("rnn", "gru", "lstm")))
BACKWARD_NAME = "runs/sample/back.pt"
"""The backward model the README's examples read: a tiny one trained with --reverse."""
COMPARE_CALL = re.compile(r"(?:\brnnlm|-m rnnlm_cli)\s+compare\b")
# A comparison gets a second of training per run and a tiny shape (the file written by
# ``prepared``), whatever its own --budget: it shows the runs train, are measured and drawn.
COMPARE_BUDGET = "--budget 1"
COMPARE_SHAPE = "compare-shape.yaml"
ANALYZE_CALL = re.compile(r"(?:\brnnlm|-m rnnlm_cli)\s+analyze\s+gradients\b")
ANALYZE_BUDGET = "--positions 16"
CORPUS_LINES = 3000  # corpus.txt: the head of sample_data/train.txt, for speed
QUICKSTART_NAME = "runs/sample/model.pt"
QUICKSTART_MODEL = ROOT / QUICKSTART_NAME
"""Where sample_data/quickstart.sh writes its model, in this checkout."""
QUICKSTART_PRESET = "sample-cpu"
README_FLOATS = 1e-3
"""How far a number may be from the README's in a quickstart transcript that scores a corpus of
``sample_data/``: a CPU of another kind rounds the last bits of training differently, which
totals over 35k tokens average out (logprob -40168.2 on both kinds measured); a stale figure is
further off (13.9354 against 14.0379 is 0.7%)."""
FEW_WORDS_FLOATS = 0.05
"""The same for a transcript over a handful of words, where that rounding shows: a quickstart
model trained on a second kind of 2-core EPYC moved single words' probabilities by up to 3%
(0.548048 against 0.558245) while its corpus totals matched to the last digit shown."""


@dataclass(frozen=True)
class Example:
    """One command of README.md and what the README shows with it."""

    command: str
    """The command line as written, continuation lines joined."""
    line: int
    """Its line number in README.md (1-based)."""
    setup: tuple[str, ...] = ()
    """Commands before it in the same transcript block, run first (``echo ... > ex.txt``)."""
    shown: tuple[str, ...] = ()
    """The output lines the transcript shows under it; empty outside transcripts."""
    files: tuple[tuple[str, str], ...] = ()
    """(name, text) of files the block shows with ``$ cat NAME``, written when missing."""


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced block and each indented block of markdown."""
    blocks: list[tuple[int, list[str]]] = []
    lines = text.splitlines()
    fence: list[str] | None = None
    start = 0
    indented: list[str] = []
    previous = ""  # the last non-blank line outside code, to tell list continuations apart

    def close_indented() -> None:
        while indented and not indented[-1].strip():
            indented.pop()
        if indented:
            blocks.append((start, [line[4:] if line.startswith("    ") else line.lstrip("\t") for line in indented]))
        indented.clear()

    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip().startswith("```"):
                blocks.append((start, fence))
                fence = None
            else:
                fence.append(line)
            continue
        if line.strip().startswith("```"):
            close_indented()
            fence, start = [], number + 1
            continue
        is_code = line.startswith(("    ", "\t")) and line.strip()
        if indented and (is_code or not line.strip()):
            indented.append(line)
            continue
        close_indented()
        after_blank = number == 1 or not lines[number - 2].strip()
        in_list = re.match(r"\s*([-*+]|\d+\.)\s", previous) is not None
        if is_code and after_blank and not in_list:
            indented.append(line)
            start = number
        elif line.strip():
            previous = line
    close_indented()
    return blocks


def logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(offset, line) with backslash-newline continuations joined."""
    joined: list[tuple[int, str]] = []
    for offset, line in enumerate(lines):
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1].rstrip() + " " + line.strip())
        else:
            joined.append((offset, line))
    return joined


def readme_examples(text: str) -> list[Example]:
    examples: list[Example] = []
    for start, block in code_blocks(text):
        if any(line.startswith("$ ") for line in block):
            examples.extend(_transcript(start, block))
            continue
        for offset, line in logical_lines(block):
            command = CRON_FIELDS.sub("", line.strip())
            if command.startswith("#") or not CALL.search(command):
                continue
            examples.append(Example(command=command, line=start + offset))
    return examples


def _transcript(start: int, block: list[str]) -> list[Example]:
    """The ``$ `` commands of a block, each with the lines shown under it."""
    steps: list[tuple[int, str, list[str]]] = []
    for offset, line in logical_lines(block):
        if line.startswith("$ "):
            steps.append((offset, line[2:].strip(), []))
        elif steps:
            steps[-1][2].append(line)
    examples, setup, files = [], [], []
    for offset, command, shown in steps:
        while shown and not shown[-1].strip():
            shown.pop()
        cat = re.fullmatch(r"cat\s+(\S+)", command)
        if cat:
            files.append((cat.group(1), "".join(line + "\n" for line in shown)))
        if CALL.search(command):
            examples.append(Example(command=command, line=start + offset, setup=tuple(setup),
                                    shown=tuple(shown), files=tuple(files)))
        setup.append(command)
    return examples


def with_budget(command: str) -> str:
    """``command`` with BUDGET after the arguments of each training call that has none, and
    each comparison given COMPARE_BUDGET and the tiny shape."""
    match = COMPARE_CALL.search(command)
    if match:
        end = _unquoted(command, match.end(), "|;&<>#")
        arguments = re.sub(r"--budget\s+\S+", COMPARE_BUDGET, command[match.end():end])
        # One value of each --vary: a run per variant is the same path again, not worth its seconds.
        arguments = re.sub(r"(--vary\s+\w+=)([^,\s]+)\S*", r"\1\2", arguments)
        if "--config" not in arguments:
            arguments = arguments.rstrip() + f" --config {COMPARE_SHAPE} "
        command = command[:match.end()] + arguments + command[end:]
    match = ANALYZE_CALL.search(command)
    if match and "--positions" not in command:
        end = _unquoted(command, match.end(), "|;&<>#")
        command = command[:end].rstrip() + f" {ANALYZE_BUDGET} " + command[end:]
    out, position = [], 0
    for match in TRAIN_CALL.finditer(command):
        end = _unquoted(command, match.end(), "|;&<>#")
        if "--max-steps" not in command[match.end():end]:
            while command[end - 1].isdigit():  # "2>&1": the redirection starts at its descriptor
                end -= 1
            out.append(command[position:end].rstrip() + " " + BUDGET + (" " if end < len(command) else ""))
            position = end
    out.append(command[position:])
    return "".join(out).rstrip()


def _unquoted(command: str, index: int, stops: str) -> int:
    """The index of the first character of ``stops`` outside quotes from ``index`` on (a "#"
    only after a space: a comment), or the length."""
    quote = ""
    for index in range(index, len(command)):
        char = command[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in stops and (char != "#" or command[index - 1].isspace()):
            return index
    return len(command)


def shell_command(example: Example) -> str:
    command = LEADING_CD.sub("", example.command)
    return with_budget(command[:_unquoted(command, 0, "#")].rstrip())


def leaves_files(command: str) -> bool:
    """Whether a command run before an example can leave files it needs: all but a call of
    eval or generate whose only output is what it prints."""
    call = CALL.search(command)
    if call is None or call.group(1) not in ("eval", "generate"):
        return True
    return re.search(r">|--out\b|--plot\b|\btee\b", command) is not None


def skip_reason(command: str) -> str | None:
    """Why an example cannot run here, or None."""
    if "torchrun" in command:
        return "torchrun: several processes on CUDA GPUs (or a rendezvous between machines)"
    if re.search(r"--device\s+cuda", command) and not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if re.search(r"--device\s+mps", command) and not torch.backends.mps.is_available():
        return "needs an Apple GPU (mps)"
    for flag, modules, extra in ((r"--format\s+(?:sherpa-)?onnx|rnnlm\s+export\s+(?!.*--format)", ("onnx", "onnxscript"), "onnx"),
                                 (r"--plot\b", ("matplotlib",), "plot")):
        if re.search(flag, command):
            missing = [name for name in modules if importlib.util.find_spec(name) is None]
            if missing:
                return f"needs the {extra} extra ({', '.join(missing)} not installed)"
    return None


def shown_line_matches(shown: str, printed: str) -> bool:
    """The same text and integers; any number where the README shows a float (the model's own)."""
    shown, printed = MODEL_COUNTS.sub("(N EM iterations)", shown), MODEL_COUNTS.sub("(N EM iterations)", printed)
    if NUMBER.split(shown) != NUMBER.split(printed):
        return False
    for want, got in zip(NUMBER.findall(shown), NUMBER.findall(printed)):
        is_float = "." in want or "e" in want
        if not is_float and want != got:
            return False
    return True


def shown_numbers_match(shown: str, printed: str, tolerance: float = README_FLOATS) -> bool:
    """The same text and integers, and each float within ``tolerance`` (relative) of the README's."""
    if not shown_line_matches(shown, printed):
        return False
    for want, got in zip(NUMBER.findall(shown), NUMBER.findall(printed)):
        if not math.isclose(float(want), float(got), rel_tol=tolerance, abs_tol=max(1e-4, last_digit(want))):
            return False
    return True


def last_digit(number: str) -> float:
    """The value of one unit in the last digit ``number`` shows: 1e-4 for "0.0001", 1e-10 for "-3.1735e-06"."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def quickstart_model() -> tuple[Path | None, str]:
    """The quickstart's model in this checkout, or None and why not: missing, or trained otherwise
    (another preset or seed, a GPU, a run cut short)."""
    if not QUICKSTART_MODEL.is_file():
        return None, f"{QUICKSTART_NAME} is missing: run sample_data/quickstart.sh first (CI does)"
    from rnnlm_cli.presets import load_preset

    saved = load_checkpoint(QUICKSTART_MODEL)
    stored = {**vars(saved.model_config), **saved.train_config}
    preset = load_preset(QUICKSTART_PRESET)
    differs = sorted(name for name, value in preset.items() if stored.get(name) != value)
    device = saved.train_config.get("provenance", {}).get("environment", {}).get("device")
    if differs or stored.get("seed") != 1234 or device != "cpu" or saved.metrics.get("epoch") != preset["epochs"]:
        return None, (f"{QUICKSTART_NAME} was not trained by sample_data/quickstart.sh on a CPU "
                      f"({', '.join(differs) or 'seed, device or epochs'} differ): run it again")
    return QUICKSTART_MODEL, ""


def write_bigram_arpa(corpus: Path, path: Path, discount: float = 0.5) -> None:
    """A bigram model of ``corpus`` in ARPA form, as the README's ``--mix-lm bigram.arpa`` uses:
    absolute discounting, P(w | h) = (c(h w) - D) / c(h) for seen pairs, and the mass left,
    D * n(h) / c(h) (n(h) distinct followers), spread by backoff(h) over the unigrams of the rest."""
    unigrams, bigrams, contexts = Counter(), Counter(), Counter()
    for line in corpus.read_text(encoding="utf-8").splitlines():
        words = ["<s>", *line.split(), "</s>"]
        unigrams.update(words[1:])
        bigrams.update(zip(words, words[1:]))
        contexts.update(words[:-1])
    total = sum(unigrams.values())
    p1 = {word: count / total for word, count in unigrams.items()}
    followers: dict[str, list[str]] = {}
    for first, second in bigrams:
        followers.setdefault(first, []).append(second)

    def backoff(word: str) -> str:
        if word not in followers:
            return ""
        left = discount * len(followers[word]) / contexts[word]
        return f"\t{math.log10(left / (1.0 - sum(p1[w] for w in followers[word]))):.6f}"

    rows1 = [f"-99\t<s>{backoff('<s>')}"] + [f"{math.log10(p1[w]):.6f}\t{w}{backoff(w)}" for w in sorted(p1)]
    rows2 = [f"{math.log10((count - discount) / contexts[h]):.6f}\t{h} {w}" for (h, w), count in sorted(bigrams.items())]
    path.write_text(f"\\data\\\nngram 1={len(rows1)}\nngram 2={len(rows2)}\n\n\\1-grams:\n" + "\n".join(rows1)
                    + "\n\n\\2-grams:\n" + "\n".join(rows2) + "\n\n\\end\\\n", encoding="utf-8")


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))


SAMPLE_MARKDOWN = """Inline `rnnlm eval x y` is prose, not an example.

```sh
rnnlm eval m.pt t.txt   # scores
python3 -m pytest -q
```

    rnnlm generate m.pt \\
        --seed 1

- a list item

    rnnlm train list-continuation.txt

```
$ echo "a b ." > ex.txt
$ cat hyps
u1 -1 -2 2 a b
$ rnnlm eval m.pt ex.txt
file ex.txt: 1 sentences
```

```
30 2 * * *  cd /srv && rnnlm train c.txt --max-time 60 >> log 2>&1
```
"""


def test_examples_are_found_in_every_kind_of_block():
    examples = readme_examples(SAMPLE_MARKDOWN)
    assert [e.command for e in examples] == ["rnnlm eval m.pt t.txt   # scores", "rnnlm generate m.pt --seed 1",
                                             "rnnlm eval m.pt ex.txt",
                                             "cd /srv && rnnlm train c.txt --max-time 60 >> log 2>&1"]
    assert [e.line for e in examples] == [4, 8, 19, 24]
    transcript = examples[2]
    assert transcript.setup == ('echo "a b ." > ex.txt', "cat hyps")
    assert transcript.files == (("hyps", "u1 -1 -2 2 a b\n"),)
    assert transcript.shown == ("file ex.txt: 1 sentences",)
    assert shell_command(examples[0]) == "rnnlm eval m.pt t.txt"
    assert shell_command(examples[3]) == f"rnnlm train c.txt --max-time 60 {BUDGET} >> log 2>&1"


def test_only_commands_that_can_leave_files_run_before_an_example():
    assert not leaves_files("rnnlm eval m.pt --nbest text --output sentence-scores")
    assert not leaves_files('echo "a b ." | rnnlm eval m.pt - --query')
    assert leaves_files("rnnlm eval m.pt t.txt > scores.txt") and leaves_files("rnnlm generate m.pt | tee out.txt")
    assert leaves_files("rnnlm tokenize c.txt --out c.tok") and leaves_files('echo "a b ." > ex.txt')


def test_the_readme_has_examples_of_every_command():
    found = {CALL.search(example.command).group(1) for example in EXAMPLES}
    assert {"tokenize", "train", "eval", "generate", "export"} <= found
    assert any(example.shown for example in EXAMPLES)


def test_shown_output_matches_only_the_same_text_and_counts():
    shown = "1 sentences, 5 words, 1 OOVs\t0 zeroprobs, logprob= -5.52588 ppl= 12.7402"
    assert shown_line_matches(shown, "1 sentences, 5 words, 1 OOVs\t0 zeroprobs, logprob= -12.3 ppl= 296")
    assert not shown_line_matches(shown, "1 sentences, 5 words, 2 OOVs\t0 zeroprobs, logprob= -5.52588 ppl= 12.7402")
    assert not shown_line_matches(shown, "1 sentences, 5 words, 1 OOVs\t0 zeroprobs, logprob= -5.52588 ppl1= 12.7402")
    assert not shown_line_matches("u1-1 -143.3 4 the dog", "u1-2 -143.3 4 the dog")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The folder every example starts from: sample data under the README's names and the
    tiny model under each model name the README uses."""
    base = tmp_path_factory.mktemp("readme")
    shutil.copytree(SAMPLE, base / "sample_data", ignore=shutil.ignore_patterns("*.py", "*.md", "*.json", "*.sh"))
    for split in ("train", "valid", "test"):  # the stories' heads: the examples read them in seconds
        stories = base / "sample_data" / "stories" / f"{split}.txt"
        stories.write_text("".join(stories.read_text(encoding="utf-8").splitlines(keepends=True)[:400]))
    head = "".join(SAMPLE.joinpath("train.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:CORPUS_LINES])
    for name in ("corpus.txt", "corpus/all.txt"):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(head, encoding="utf-8")
    for name, source in (("test.txt", "test.txt"), ("valid.txt", "valid.txt"), ("corpus/dev.txt", "valid.txt")):
        shutil.copyfile(SAMPLE / source, base / name)
    (base / "logs").mkdir()
    (base / "docs").mkdir()
    (base / COMPARE_SHAPE).write_text("hidden: 16\nemb: 16\nbatch_size: 32\nbptt: 20\n", encoding="utf-8")
    write_bigram_arpa(SAMPLE / "train.txt", base / "bigram.arpa")

    build = tmp_path_factory.mktemp("tiny")
    runner = CliRunner()
    for args in (["train", str(SAMPLE / "train.txt"), "--valid", str(SAMPLE / "valid.txt"), *TINY,
                  "--out", str(build / "model.pt")],
                 ["tokenize", str(base / "corpus.txt"), "--kind", "word", "--out", str(base / "corpus.tok")]):
        result = runner.invoke(app, args, env={"RNNLM_DEBUG": None})
        assert result.exit_code == 0, result.output
    for name in MODEL_NAMES:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build / "model.pt", base / name)
    result = runner.invoke(app, ["train", str(SAMPLE / "train.txt"), "--valid", str(SAMPLE / "valid.txt"), *TINY,
                                 "--reverse", "--out", str(base / BACKWARD_NAME)], env={"RNNLM_DEBUG": None})
    assert result.exit_code == 0, result.output
    bin_dir = base.parent / (base.name + "-bin")
    bin_dir.mkdir()
    # "rnnlm" is this interpreter's rnnlm_cli, the code under test, wherever pytest runs from.
    (bin_dir / "rnnlm").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m rnnlm_cli \"$@\"\n")
    (bin_dir / "rnnlm").chmod(0o755)
    return base


def run_example(example: Example, prepared: Path, folder: Path, model: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``example`` in a copy of ``prepared`` at ``folder``; ``model`` replaces the quickstart's."""
    shutil.copytree(prepared, folder)
    if model is not None:
        shutil.copyfile(model, folder / QUICKSTART_NAME)
    for variants in re.findall(r"--variants\s+(\S+)", example.command):
        # One variant of the file, as one value of each --vary: the rest are the same path again.
        path = folder / variants
        named = yaml.safe_load(path.read_text(encoding="utf-8"))
        first = next(name for name in named if name != "base")
        path.write_text(yaml.safe_dump({name: named[name] for name in named if name in ("base", first)}))
    for name, text in example.files:
        if not (folder / name).exists():
            (folder / name).write_text(text, encoding="utf-8")
    env = dict(os.environ, PATH=f"{prepared.parent / (prepared.name + '-bin')}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")  # one thread: faster on a small shared machine
    env.pop("RNNLM_DEBUG", None)
    if example.setup:  # their output is the README's, not the example's
        # Training in the setup gets the same budget as an example's own (a few steps); a
        # scoring or sampling call that writes nothing but its output leaves nothing to run first.
        needed = [with_budget(command) for command in example.setup if leaves_files(command)]
        setup = subprocess.run(["sh", "-c", "\n".join(needed)], cwd=folder, env=env,
                               capture_output=True, text=True, timeout=60, check=False)
        assert setup.returncode == 0, (example.setup, setup.stderr)
    return subprocess.run(["sh", "-c", shell_command(example)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.command for example in EXAMPLES])
def test_readme_example_runs(example, prepared, tmp_path):
    reason = skip_reason(example.command)
    if reason:
        pytest.skip(f"README.md line {example.line}: {reason}")
    folder = tmp_path / "work"
    result = run_example(example, prepared, folder)
    assert result.returncode == 0, (shell_command(example), result.stdout[-2000:], result.stderr[-3000:])
    stdout = result.stdout
    printed = stdout.splitlines() + result.stderr.splitlines()
    for line in example.shown:
        # what the README shows came out (stdout or stderr, as a terminal shows both)
        assert any(shown_line_matches(line, out) for out in printed), (line, printed[:40])

    command = shell_command(example)
    call = CALL.search(command).group(1)
    if "--json" in command:
        assert isinstance(json.loads(stdout), dict)
    elif call == "eval":
        check_eval(command, stdout)
    elif call == "generate":
        check_generate(command, stdout, folder)
    check_written_files(command, call, folder)


QUICKSTART_TRANSCRIPTS = [example for example in EXAMPLES if example.shown and QUICKSTART_NAME in example.command]


def test_the_readme_shows_transcripts_of_the_quickstart_model():
    assert len(QUICKSTART_TRANSCRIPTS) >= 5


@pytest.mark.parametrize("example", QUICKSTART_TRANSCRIPTS, ids=[example.command for example in QUICKSTART_TRANSCRIPTS])
def test_readme_transcript_is_the_quickstart_models_output(example, prepared, tmp_path):
    model, why_not = quickstart_model()
    if model is None:
        pytest.skip(why_not)
    result = run_example(example, prepared, tmp_path / "work", model=model)
    assert result.returncode == 0, (shell_command(example), result.stderr[-3000:])
    printed = result.stdout.splitlines() + result.stderr.splitlines()
    tolerance = README_FLOATS if "sample_data/" in example.command else FEW_WORDS_FLOATS
    for line in example.shown:
        assert any(shown_numbers_match(line, out, tolerance) for out in printed), (
            f"README.md line {example.line}: {line!r} is not what the quickstart model prints", printed[:40])


def test_shown_numbers_must_be_the_readmes():
    shown = "0 zeroprobs, logprob= -40056.7 ppl= 13.9354 ppl1= 17.7404"
    assert shown_numbers_match(shown, "0 zeroprobs, logprob= -40056.9 ppl= 13.9355 ppl1= 17.7405")
    assert not shown_numbers_match(shown, "0 zeroprobs, logprob= -40168.2 ppl= 14.0379 ppl1= 17.8829")
    # A cost printed to 4 decimals may move by its last digit; a tiny log-probability by 1e-4.
    assert shown_numbers_match("utt1 1.7866 0.0001", "utt1 1.7866 0.0000")
    assert shown_numbers_match("</s>=-3.1735e-05", "</s>=-3.2e-05")
    assert not shown_numbers_match("utt1 1.7866 0.0001", "utt1 1.7966 0.0001")
    # Over a handful of words another CPU's training may move a figure by a few percent, not more.
    assert shown_numbers_match("p = 0.558245", "p = 0.548048", FEW_WORDS_FLOATS)
    assert not shown_numbers_match("p = 0.558245", "p = 0.5", FEW_WORDS_FLOATS)
    assert last_digit("0.0001") == 1e-4 and math.isclose(last_digit("-3.1735e-06"), 1e-10)


def check_eval(command: str, stdout: str) -> None:
    lines = stdout.splitlines()
    if "--query" in command and "--format kenlm" in command:
        # Answer lines, then KenLM's four summary lines.
        assert lines[-4:-2] and all(line.startswith("Perplexity ") for line in lines[-4:-2]), lines
        assert lines[-2].startswith("OOVs:\t") and lines[-1].startswith("Tokens:\t"), lines
        assert all(re.search(r"\tTotal: -?[\d.e-]+ OOV: \d+$", line) for line in lines[:-4]), lines
    elif "--query" in command:
        assert lines and all(re.search(r"\tTotal: -?[\d.e-]+ OOV: \d+$", line) for line in lines), lines
    elif "--output sentence-scores" in command:  # a log10 score per hypothesis, or with --cost "KEY -ln P"
        for line in lines:
            *key, score = line.split()
            assert len(key) == ("--cost" in command) and (float(score) >= 0) == ("--cost" in command), line
    elif "--output token-scores" in command:  # "KEY c1 ... cN cEOS", each -ln P
        for line in lines:
            key, *costs = line.split()
            assert costs and all(float(cost) >= 0 for cost in costs), line
    elif "--tune" in command:  # the WER table: its rows of figures, then the grid around the best
        assert re.fullmatch(r"\S+: [\d,]+ utterances, [\d,]+ hypotheses, [\d,]+ reference words", lines[0]), lines
        assert lines[2].startswith("acoustic scores alone ") and lines[3].startswith("oracle (best of lists) "), lines
        assert any(re.search(r"%\s+[\d,]+\s+--lm-weight \S+ --word-penalty \S+", line) for line in lines), lines
    elif "--nbest" in command:
        for line in lines:
            key, total, acoustic, lm, count, *words = line.split()
            assert int(count) == len(words) and float(lm) < 0, line
            if "--nbest-best" not in command:
                assert math.isfinite(float(total) + float(acoustic))
    elif "--pairs" in command:
        assert re.fullmatch(r"\S+: \d+ pairs, \d+ right \(accuracy [\d.]+\), \d+ ties", lines[0]), lines[:3]
        assert lines[1].split() == ["group", "right", "total", "accuracy"], lines[:3]
    elif "--per-sentence" in command:
        assert lines and all(float(line) <= 0 for line in lines)
    else:
        assert re.fullmatch(r"file \S+: \d+ sentences, \d+ words, \d+ OOVs", lines[-2]), lines[-2:]
        ppl = float(re.search(r"ppl= (\S+)", lines[-1]).group(1))
        assert math.isfinite(ppl) and ppl > 1, lines[-1]


def check_generate(command: str, stdout: str, folder: Path) -> None:
    """Text in the model's words (the tiny model is a word model of the sample corpus)."""
    model = re.search(r"generate\s+(\S+)", command).group(1)
    words = stdout.split()
    assert words and set(words) <= set(load_checkpoint(folder / model).tokenizer["pieces"]), stdout


def check_written_files(command: str, call: str, folder: Path) -> None:
    """The files the command names (and those the README says go beside a model) exist."""
    outs = re.findall(r"(?:^|\s)(?:--out|-o)\s+(\S+)", command)
    for picture in re.findall(r"--plot\s+(\S+\.png)", command):
        assert (folder / picture).read_bytes()[:4] == b"\x89PNG", picture
    if call == "compare":  # --out is a folder: a model per run, and the curves
        runs = folder / (outs[0] if outs else "runs/compare")
        assert (runs / "curves.png").is_file()
        vary = re.search(r"--vary\s+(\w+)=(\S+)", command)
        if vary:
            key, values = vary.groups()
            names = [f"{key}={value}" for value in values.split(",")]
        else:  # --variants FILE: its names, less the shared options
            variants = yaml.safe_load((folder / re.search(r"--variants\s+(\S+)", command).group(1)).read_text())
            names = [name for name in variants if name != "base"]
        repeat = re.search(r"--repeat\s+(\d+)", command)
        seeds = [f"seed{1234 + i}" for i in range(int(repeat.group(1)))] if repeat else [""]
        for name in names:
            for seed in seeds:
                assert (runs / name / seed / "result.json").is_file(), (name, seed)
        return
    if call == "export" and re.search(r"--format\s+sherpa-onnx\b", command):
        # --out is the start of the four files' names, not a file
        from rnnlm_cli.store.sherpa_onnx import sherpa_paths

        model = Path(re.search(r"export\s+(\S+)", command).group(1))
        for path in sherpa_paths(str(folder / (outs[0] if outs else model.with_suffix("")))):
            assert Path(path).is_file() and Path(path).stat().st_size > 0, path
        return
    for out in outs:
        assert (folder / out).is_file() and (folder / out).stat().st_size > 0, out
    if call == "train":
        out = Path(outs[0] if outs else "model.pt")
        load_checkpoint(folder / out)
        for beside in (".last.pt", ".metrics.jsonl"):
            assert (folder / out.with_suffix(beside)).is_file(), beside
        for target in re.findall(r"--promote-if-better\s+(\S+)", command):
            load_checkpoint(folder / target)
        log = re.search(r">>?\s*(\S+)", command[TRAIN_CALL.search(command).end():])
        if log:
            assert (folder / log.group(1)).read_text(encoding="utf-8").strip(), "the log is empty"
    if call == "export":
        fmt = (re.findall(r"--format\s+(\w+)", command) or ["onnx"])[0]
        model = Path(re.search(r"export\s+(\S+)", command).group(1))
        path = folder / (outs[0] if outs else model.with_suffix({"onnx": ".onnx", "safetensors": ".safetensors",
                                                                  "embeddings": ".vec"}[fmt]))
        assert path.is_file() and path.stat().st_size > 0, path
        if fmt == "onnx":
            import onnx

            inputs = [i.name for i in onnx.load(str(path)).graph.input]
            assert inputs[:2] == ["tokens", "h0"], inputs  # as the README documents
