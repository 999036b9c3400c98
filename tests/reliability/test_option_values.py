"""Every option value is checked: flags, --config YAML, presets and auxiliary files.

A bad value is exit 2 (a bad option) or 65 (bad data in a file), one line on stderr,
never exit 1, a traceback, a hang or unbounded memory. The float and integer options are
enumerated from the Typer commands and from the config dataclasses, so an option added
later is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import time
import typing

import pytest
import torch
import typer

from rnnlm_cli import cli
from rnnlm_cli.cli import eval as eval_command, export as export_command, generate as generate_command
from rnnlm_cli.cli import tokenize as tokenize_command, train as train_command
from rnnlm_cli.cli import analyze as analyze_command, compare as compare_command
from rnnlm_cli.config import TokenizerConfig, TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.config import SamplingConfig
from rnnlm_cli.train.pretrained import load_embeddings
from rnnlm_cli.score.scoring_config import ScoringConfig
from rnnlm_cli.text.tokenizers import WordTokenizer

import conftest
from conftest import one_error_line

COMMANDS = {**{module.NAME: module.command for module in (tokenize_command, train_command, eval_command,
                                                          generate_command, export_command, compare_command)},
            "analyze gradients": analyze_command.gradients}
TINY_TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--epochs", "1", "--batch-size", "2", "--bptt", "4",
              "--max-steps", "1", "--max-time", "1", "--device", "cpu"]
NOT_NUMBERS = ("nan", "inf", "-inf")
HUGE = str(10**30)
ARPA = "\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0 </s>\n-99 <s> 0\n-0.5 the\n\n\\end\\\n"
NBEST = "u1 -100 -20 2 the dog\nu1 -101 -22 2 the dogs\n"
# eval options that only mean something beside another one.
EVAL_NEEDS = {"--lambda": ["--mix-lm", "{arpa}"], "--cache-theta": ["--cache", "5"], "--cache-lambda": ["--cache", "5"],
              "--dynamic-lr": ["--dynamic"], "--dynamic-decay": ["--dynamic"], "--dynamic-segment": ["--dynamic"]}
EVAL_NBEST = ("--lm-weight", "--word-penalty")


def options_of(kind: type) -> list[tuple[str, str]]:
    """(command, flag) of every option whose Python type is ``kind`` (or Optional[kind])."""
    found = []
    for name, command in _leaf_commands(typer.main.get_command(cli.app)):
        # The signature typer reads: a command's own, or the one its field flags were added to.
        hints = {n: p.annotation for n, p in inspect.signature(COMMANDS[name], eval_str=True).parameters.items()}
        for param in command.params:
            hint = hints[param.name]
            if param.opts[0].startswith("-") and kind in (hint, *typing.get_args(hint)):
                found.append((name, param.opts[0]))
    return found


def _leaf_commands(group, prefix: str = ""):
    """(name, command) of every command that runs, groups' subcommands named "group sub"."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


FLOAT_OPTIONS = options_of(float)
INT_OPTIONS = options_of(int)


run = conftest.cli


@pytest.fixture
def files(tmp_path, saved_model, tiny_corpus):
    valid = tmp_path / "valid.txt"
    valid.write_bytes(tiny_corpus.read_bytes())
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(ARPA)
    nbest = tmp_path / "h.nbest"
    nbest.write_text(NBEST)
    out = tmp_path / "out"
    out.mkdir()
    return {"model": saved_model[0], "corpus": tiny_corpus, "valid": valid, "arpa": arpa, "nbest": nbest,
            "out": out, "tmp": tmp_path}


def command_line(command: str, flag: str, value: str, f: dict) -> list:
    """A command line that works as it is, with ``flag value`` (and what the flag needs) added."""
    if command == "train":
        base = ["train", f["corpus"], "--valid", f["valid"], "--out", f["out"] / "m.pt", *TINY_TRAIN]
    elif command == "tokenize":
        base = ["tokenize", f["corpus"], "--out", f["out"] / "c.tok"]
    elif command == "generate":
        base = ["generate", f["model"], "--max-tokens", "2", "--device", "cpu"]
    elif command == "export":
        base = ["export", f["model"], "--format", "embeddings", "--out", f["out"] / "v.vec"]
    elif command == "compare":
        base = ["compare", f["corpus"], "--valid", f["valid"], "--budget", "1", "--vary", "cell=rnn",
                "--out", f["out"] / "cmp", "--device", "cpu"]
    elif command == "analyze gradients":
        base = ["analyze", "gradients", f["model"], f["valid"], "--device", "cpu"]
    elif flag in EVAL_NBEST:
        base = ["eval", f["model"], "--nbest", f["nbest"], "--device", "cpu"]
    else:
        base = ["eval", f["model"], f["corpus"], "--device", "cpu",
                *(a.format(arpa=f["arpa"]) for a in EVAL_NEEDS.get(flag, []))]
    return [*base, flag, value]


# ---------------------------------------------------------------- flags, enumerated


def test_the_enumeration_finds_the_options_named_in_the_issue():
    assert {("train", "--lr"), ("train", "--clip"), ("eval", "--lm-weight"), ("eval", "--lambda"),
            ("generate", "--temperature"), ("compare", "--budget")} <= set(FLOAT_OPTIONS)
    assert {("train", "--seed"), ("generate", "--seed"), ("generate", "--max-tokens"),
            ("train", "--batch-size"), ("compare", "--repeat"), ("analyze gradients", "--max-distance")} <= set(INT_OPTIONS)


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize("command,flag", FLOAT_OPTIONS)
def test_every_float_flag_refuses_nan_and_infinities(command, flag, value, files):
    result = run(*command_line(command, flag, value, files))
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert flag in one_error_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize("command,flag", INT_OPTIONS)
def test_every_int_flag_refuses_a_value_beyond_64_bits(command, flag, files):
    result = run(*command_line(command, flag, HUGE, files))
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert flag in one_error_line(result.stderr)


@pytest.mark.parametrize("command", ["train", "generate"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), HUGE])
def test_seeds_outside_0_to_2_32_are_usage_errors(command, seed, files):
    result = run(*command_line(command, "--seed", seed, files))
    assert result.exit_code == 2, result.stderr
    assert one_error_line(result.stderr) == (f"rnnlm: error: --seed must be a whole number between 0 and "
                                             f"{2**32 - 1}, got {seed}")


def test_the_largest_seed_still_works(files):
    result = run(*command_line("generate", "--seed", str(2**32 - 1), files))
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("extra", [["--temperature", "1e-320"], ["--temperature", "1e-45"],
                                   ["--top-p", "1e-320"], ["--top-k", "1"]])
def test_a_vanishing_temperature_or_nucleus_is_greedy_sampling(extra, files):
    base = ["generate", files["model"], "--max-tokens", "6", "--num-samples", "2", "--seed", "3", "--device", "cpu"]
    greedy = run(*base, "--temperature", "0")
    assert greedy.exit_code == 0, greedy.stderr
    result = run(*base, *extra)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == greedy.stdout


# ---------------------------------------------------------------- the config dataclasses


def _build(cls: type, **values):
    return cls(**{"vocab_size": 10, **values}) if cls is ModelConfig else cls(**values)


def _fields(kind: str) -> list[tuple[type, str]]:
    return [(cls, f.name) for cls in (ModelConfig, TokenizerConfig, TrainConfig, ScoringConfig, SamplingConfig)
            for f in dataclasses.fields(cls) if str(f.type).split(" |")[0] == kind]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("cls,name", _fields("float"))
def test_every_float_field_refuses_nan_and_infinities(cls, name, value):
    with pytest.raises(UsageError, match="finite"):
        _build(cls, **{name: value})


@pytest.mark.parametrize("cls,name", _fields("int"))
def test_every_int_field_refuses_wrong_types_and_values_beyond_64_bits(cls, name):
    for bad in (10**30, -(10**30), "8", 8.0, True):
        with pytest.raises(UsageError):
            _build(cls, **{name: bad})


# ---------------------------------------------------------------- YAML --config and presets


def train_with_config(files, text: str | bytes):
    path = files["tmp"] / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return run("train", files["corpus"], "--valid", files["valid"], "--out", files["out"] / "m.pt",
               "--config", path, *TINY_TRAIN), path


def alias_bomb(levels: int, laughs: int = 9) -> str:
    """YAML's "billion laughs": each level lists the previous one ``laughs`` times."""
    names = [f"l{i}" for i in range(levels)]
    parts = ["&l0 [" + ", ".join(["lol"] * laughs) + "]"]
    parts += [f"&{name} [" + ", ".join([f"*{names[i]}"] * laughs) + "]" for i, name in enumerate(names[1:])]
    return "cell: [" + ", ".join(parts) + "]\n"


@pytest.mark.parametrize("key", ["lr", "clip", "dropout", "weight_decay", "l1", "lr_decay", "synonym_weight"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+400"])
def test_yaml_nan_and_infinities_are_usage_errors(key, value, files):
    result, _ = train_with_config(files, f"{key}: {value}\n")
    assert result.exit_code == 2, result.stderr
    assert key.replace("_", "-") in one_error_line(result.stderr)


@pytest.mark.parametrize("text,says", [
    pytest.param(b"lr: 0.1\ncell: \xff\xfe\n", "{path}: not UTF-8 text (invalid byte at offset 14)", id="not-utf8"),
    pytest.param("base: &b gru\ncell: *b\n", "{path}:2: aliases (*name) are not allowed", id="alias"),
    pytest.param(alias_bomb(7), "{path}:1: option values are single values", id="billion-laughs"),
    pytest.param("1: 2\n", "{path}: option name 1 is not a word", id="int-key"),
    pytest.param("? [a, b]\n: 1\n", "{path}:1: option values are single values", id="list-key"),
    pytest.param("lr: {a: 1}\n", "{path}:1: option values are single values", id="nested-mapping"),
    pytest.param("tokenizer: [word, char]\n", "{path}:1: option values are single values", id="nested-list"),
    pytest.param("lr: " + "[" * 20_000 + "]" * 20_000 + "\n", "{path}:1: option values are single values", id="deep"),
    pytest.param("lr: " + "9" * 5000 + "\n", "{path}: a value cannot be read", id="5000-digits"),
    pytest.param("lr: " + "9" * 400 + "\n", "option lr: expected float, got 99999", id="400-digits"),
    pytest.param("seed: -1\n", "--seed must be a whole number between 0 and", id="negative-seed"),
    pytest.param("strict: 'no'\n", "{path}: option strict: expected true or false, got 'no'", id="string-bool"),
    pytest.param("valid: 0\n", "{path}: option valid: expected a file name", id="int-path"),
    pytest.param("cell: !!binary aGVsbG8=\n", "{path}: option cell: expected a number, a word or true/false", id="binary"),
    pytest.param("# " + "x" * 100_000 + "\nlr: 0.1\n", "{path}: over 64 KiB, too large for an option file", id="huge"),
])
def test_hostile_yaml_configs_are_one_line_usage_errors(text, says, files):
    start = time.monotonic()
    result, path = train_with_config(files, text)
    assert time.monotonic() - start < 30
    assert result.exit_code == 2, result.stderr[:2000]
    line = one_error_line(result.stderr)
    assert says.format(path=path) in line, line
    assert os.listdir(files["out"]) == []


def test_a_date_in_yaml_stays_text(files):
    result, _ = train_with_config(files, "cell: 2020-01-01\n")
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == ("rnnlm: error: unknown cell '2020-01-01'; "
                                             "choose one of lstm, gru, rnn, mogrifier")


def test_presets_go_through_the_same_checked_loader(monkeypatch):
    from rnnlm_cli import presets

    class Entry:
        name = "evil.yaml"

        def read_bytes(self) -> bytes:
            return b"base: &b gru\ncell: *b\n"

        def read_text(self, encoding="utf-8") -> str:
            return self.read_bytes().decode(encoding)

    monkeypatch.setattr(presets, "_files", lambda: {"evil": Entry()})
    with pytest.raises(UsageError, match="preset evil:2: aliases"):
        presets.load_preset("evil")


# ---------------------------------------------------------------- ARPA files


@pytest.mark.parametrize("prob", ["0.5", "1e-9", "nan", "inf", "+inf"])
def test_arpa_probabilities_above_zero_or_not_numbers_are_bad_data(prob, files):
    arpa = files["tmp"] / "bad.arpa"
    arpa.write_text(ARPA.replace("-0.5 the", f"{prob} the"))
    result = run("eval", files["model"], files["corpus"], "--mix-lm", arpa, "--device", "cpu")
    assert result.exit_code == 65, result.stderr
    assert one_error_line(result.stderr).startswith(f"rnnlm: error: {arpa}:7: log10 probability")
    assert result.stdout == ""


def test_arpa_minus_infinity_is_probability_zero_and_accepted(files):
    arpa = files["tmp"] / "zero.arpa"
    arpa.write_text(ARPA.replace("-99 <s>", "-inf <s>"))
    result = run("eval", files["model"], files["corpus"], "--mix-lm", arpa, "--device", "cpu")
    assert result.exit_code == 0, result.stderr


# ---------------------------------------------------------------- n-best files


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_nbest_list_is_bad_data(content, files):
    path = files["tmp"] / "empty.nbest"
    path.write_bytes(content)
    result = run("eval", files["model"], "--nbest", path, "--device", "cpu")
    assert result.exit_code == 65, result.stderr
    assert one_error_line(result.stderr) == (f"rnnlm: error: {path}: empty n-best list, no hypotheses to "
                                             "rescore; check the step that wrote it")
    assert result.stdout == ""


def test_non_utf8_nbest_words_are_replaced_and_warned_or_refused_with_strict(files):
    path = files["tmp"] / "latin1.nbest"
    path.write_bytes(b"u1 -1 -2 2 caf\xe9 dog\n")
    result = run("eval", files["model"], "--nbest", path, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("u1-1 ") and result.stdout.endswith(" 2 caf\ufffd dog\n")
    assert result.stderr.splitlines() == [f"rnnlm: warning: {path}: 1 line(s) with invalid UTF-8, "
                                          "1 character(s) replaced (use --strict to refuse)"]
    strict = run("eval", files["model"], "--nbest", path, "--device", "cpu", "--strict")
    assert strict.exit_code == 65
    assert "invalid UTF-8" in one_error_line(strict.stderr)


@pytest.mark.parametrize("line", ["u1 inf -2 1 the", "u1 -1 1e999 1 the"])
def test_an_nbest_score_of_plus_infinity_is_bad_data(line, files):
    path = files["tmp"] / "inf.nbest"
    path.write_text(line + "\n")
    result = run("eval", files["model"], "--nbest", path, "--device", "cpu")
    assert result.exit_code == 65, result.stderr
    assert one_error_line(result.stderr).startswith(f"rnnlm: error: {path}:1: ")


_PEAK = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode(errors="replace"))
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_kb(*args) -> tuple[int, int]:
    """Exit status and peak resident memory (kB) of ``rnnlm ARGS``, measured by a fresh parent."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RNNLM_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "rnnlm_cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    code, peak = done.stdout.split()
    assert int(code) == 0, done.stderr
    return int(code), int(peak)


def _long_lists(files, route: str) -> tuple[list, list]:
    """(small, big) arguments of ``rnnlm eval`` for one n-best route; big has a line of megabytes.

    The words are OOVs, scored as ``<unk>``, and short, so that holding a Python object per
    word would show; with ``--symbols`` they are two-digit ids (3 bytes a word).
    """
    tmp, count = files["tmp"], 3_000_000 // 16
    words = [f"{index:02d}abcdefghijklm" for index in range(50)]
    if route == "rescored":
        small, big = files["nbest"], tmp / "big.nbest"
        with open(big, "w") as handle:
            handle.write(f"u1 -100 -20 {count} " + " ".join(words[i % 50] for i in range(count)) + "\n")
            handle.write("u1 -101 -22 2 the dogs\n")
        return ["--nbest", small], ["--nbest", big]
    kaldi = ["--nbest-format", "kaldi", "--output", route]
    small, big = tmp / "small.txt", tmp / "big.txt"
    if route == "symbols":
        table = tmp / "words.txt"
        table.write_text("<eps> 0\n" + "".join(f"{word} {10 + i}\n" for i, word in enumerate(words)))
        count = 1_000_000 // 3
        small.write_text("u1-1 10 11\n")
        with open(big, "w") as handle:
            handle.write("u1-1 " + " ".join(str(10 + i % 50) for i in range(count)) + "\nu1-2 10 11\n")
        kaldi = ["--nbest-format", "kaldi", "--output", "sentence-scores", "--symbols", table]
    else:
        small.write_text("u1-1 the dogs\n")
        with open(big, "w") as handle:
            handle.write("u1-1 " + " ".join(words[i % 50] for i in range(count)) + "\nu1-2 the dogs\n")
    return ["--nbest", small, *kaldi], ["--nbest", big, *kaldi, "--carry-state", "best"]


_SMALL_PEAK_KB: dict[str, int] = {}
"""Peak memory of ``rnnlm eval`` on a small list (the same model in every test; the routes
differ by less than a megabyte there)."""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux")
@pytest.mark.parametrize("route", ["rescored", "sentence-scores", "token-scores", "symbols"])
def test_an_nbest_line_of_megabytes_is_scored_in_bounded_memory(files, route):
    small, big = _long_lists(files, route)
    if not _SMALL_PEAK_KB:
        _SMALL_PEAK_KB["eval"] = _peak_kb("eval", files["model"], *small, "--device", "cpu")[1]
    baseline = _SMALL_PEAK_KB["eval"]
    _, peak = _peak_kb("eval", files["model"], *big, "--device", "cpu")
    # kB. A Python object per word held 85-160 MB here; the line's text and its piece, 10 to 20.
    assert peak - baseline < 50_000, (baseline, peak)


def test_a_long_hypothesis_scores_as_its_pieces_say(files, saved_model):
    """The piecewise path gives the score the batched one gives, within float noise."""
    from rnnlm_cli.score.evaluate import TextScorer
    from rnnlm_cli.score.word_scoring import long_sentence_log10

    _, model, tokenizer = saved_model
    text = " ".join(["the dog runs .", "a cat sees the dog .", "zebra"] * 40)
    whole = TextScorer(model, tokenizer, torch.device("cpu")).score([text])[0].logprob
    pieces = long_sentence_log10(model, tokenizer, text, torch.device("cpu"), piece_chars=64, chunk_tokens=7)
    assert pieces == pytest.approx(whole, rel=1e-5)


# ---------------------------------------------------------------- embeddings and synonyms given to train


WORDS = WordTokenizer(["<unk>", "<eos>", "cat", "dog", "sat"])


@pytest.mark.parametrize("text,error,says", [
    ("cat nan 1\n", DataError, ":1: the vector of 'cat' holds NaN"),
    ("cat 1 inf\n", DataError, ":1: the vector of 'cat' holds NaN"),
    ("cat 1 1e39\n", DataError, "too large values for float32"),
    ("cat 1 2\ndog 1 2 3\n", DataError, ":2: the vector of 'dog' has 3 dimensions, the ones before it 2"),
    ("bird 1 2\ncat 1\n", DataError, ":2: the vector of 'cat' has 1 dimensions"),
    ("cat 1 2 3\n", UsageError, ":1: vectors have 3 dimensions but --emb is 2; give --emb 3"),
    ("cat 1 x\n", DataError, "not a number in the vector of 'cat'"),
    ("cat\x00\x01\x02 1 2\n", DataError, "NUL byte"),
])
def test_bad_embedding_files(text, error, says, tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_bytes(text.encode("utf-8"))
    weight = torch.zeros(WORDS.vocab_size, 2)
    with pytest.raises(error, match=None) as caught:
        load_embeddings(str(path), WORDS, weight)
    assert type(caught.value) is error and says in str(caught.value), str(caught.value)
    assert bool(torch.isfinite(weight).all())


def test_nan_embeddings_are_exit_65_before_training(files):
    vectors = files["tmp"] / "vectors.txt"
    vectors.write_text("the " + " ".join(["nan"] * 8) + "\n")
    # The rate and dropout given: nothing fitted, so the error is the only line.
    result = run("train", files["corpus"], "--valid", files["valid"], "--out", files["out"] / "m.pt", *TINY_TRAIN,
                 "--lr", "0.002", "--dropout", "0", "--embeddings", vectors)
    assert result.exit_code == 65, result.stderr
    assert one_error_line(result.stderr).startswith(f"rnnlm: error: {vectors}:1: the vector of 'the' holds NaN")
    assert not (files["out"] / "m.pt").exists()
