"""Every input of every command, whatever kind of file it is, is read once and gives what a
regular file gives: a FIFO (what `<(...)` and `mkfifo` give: its bytes come once, a second
open finds end of file), or standard input (`-`). Two inputs that are both `-` are refused
before anything is read.

The inputs are enumerated from the Typer commands: a path option added later without a
scenario here fails :func:`test_every_path_option_is_an_input_here_or_named_as_not_one`.
Each scenario runs in-process twice, with regular files and then with every input a FIFO
at once, and once more per input read from stdin; its result (stdout, or the bytes of the
file it writes) must not change. ``compare`` trains through a stand-in that records what
each run's training was given, so its runs cost no training here.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rnnlm_cli import cli
from rnnlm_cli.analysis import compare as compare_runs
from rnnlm_cli.analysis.compare import RunResult
from rnnlm_cli.cli import analyze as analyze_command, compare as compare_command, eval as eval_command
from rnnlm_cli.cli import export as export_command, generate as generate_command, tokenize as tokenize_command
from rnnlm_cli.cli import train as train_command

COMMANDS = {**{module.NAME: module.command for module in (tokenize_command, train_command, eval_command,
                                                          generate_command, export_command, compare_command)},
            "analyze gradients": analyze_command.gradients}

# String options that do not name a file read by the command, per command.
NOT_INPUTS = {
    "tokenize": {"--kind", "--out", "--save-tokenizer", "--print", "--sp-model"},
    "train": {"--out", "--preset", "--sp-model", "--cell", "--impl", "--adaptive-softmax", "--optimizer", "--schedule",
              "--amp", "--device", "--promote-if-better"},
    "eval": {"--context", "--format", "--mix-lm-backend", "--nbest-format", "--output", "--carry-state", "--device",
             "--amp", "--dynamic-rule", "--dynamic-weights", "--plot", "--tune-lm-weights", "--tune-word-penalties"},
    "generate": {"--prompt", "--device"},
    "export": {"--format", "--out"},
    "compare": {"--vary", "--preset", "--out", "--device"},
    "analyze gradients": {"--plot", "--device"},
}
TINY_TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--batch-size", "2", "--bptt", "4", "--max-steps", "2",
              "--max-time", "0", "--device", "cpu", "--seed", "3"]
CORPUS = b"the dog runs .\nthe dogs run .\na cat sees the dog .\nthe cats see a dog .\n" * 5
ARPA = (b"\\data\\\nngram 1=6\nngram 2=2\n\n\\1-grams:\n-1.0 </s>\n-99 <s> -0.3\n-0.5 the -0.2\n"
        b"-0.8 dog\n-2.0 <unk>\n-1.2 .\n\n\\2-grams:\n-0.1 <s> the\n-0.3 the dog\n\n\\end\\\n")
SYMBOLS = b"<eps> 0\nthe 1\ndog 2\nruns 3\n. 4\ncat 5\n"
KALDI_IDS = b"u1-1 1 2 3 4\nu1-2 1 5 3\nu2-1 1 2\n"
ACOUSTIC = b"u1-1 2.5\nu1-2 3.0\nu2-1 1.0\n"
KALDI_WORDS = b"u1-1 the dog runs .\nu1-2 the cat runs\nu2-1 the dog\n"
REFERENCES = b"u1 the dog runs .\nu2 the dog .\n"
PAIRS = b"the dog runs .\tthe dog run .\tagreement\t1\nthe cats see a dog .\tthe cats sees a dog .\tagreement\t1\n"
EMBEDDINGS = b"3 8\nthe" + b" 0.1" * 8 + b"\ndog" + b" -0.2" * 8 + b"\ncat" + b" 0.3" * 8 + b"\n"


@dataclass
class Scenario:
    """One command line: ``args`` with ``{NAME}`` for each input, whose bytes ``inputs`` gives."""

    name: str
    args: list[str]
    inputs: dict[str, bytes]
    options: dict[str, str]
    """Input name -> the option (or argument) that names it, as the enumeration reports it."""
    result: str = "stdout"
    """``stdout``, or an output file's name within the run's folder."""
    stdin: tuple[str, ...] = ()
    """Inputs tried from standard input (``-``), one at a time; empty: all of them."""
    patches: dict = field(default_factory=dict)


def _fake_trainer(tmp_path: Path) -> list[str]:
    """A stand-in for a compare run's training: it records the bytes of every file it was given."""
    script = tmp_path / "fake_train.py"
    script.write_text(
        "import json, os, sys\n"
        "out, files = sys.argv[1], sys.argv[2:]\n"
        "seen = [open(f, 'rb').read().decode() for f in files]\n"
        "open(os.path.join(os.path.dirname(out), 'seen'), 'w').write(json.dumps(seen))\n"
        "print(json.dumps({'best_valid_ppl': 20.0 + len(''.join(seen)), 'tokens_per_second': 1.0, 'steps': 1, "
        "'seconds': 1.0}))\n")
    return [sys.executable, str(script)]


def _scenarios(model: bytes, tokenizer: bytes) -> list[Scenario]:
    word_model = {"MODEL": model}
    return [
        Scenario("tokenize with a tokenizer", ["tokenize", "{CORPUS}", "--tokenizer", "{TOK}", "--print", "ids"],
                 {"CORPUS": CORPUS, "TOK": tokenizer}, {"CORPUS": "corpus", "TOK": "--tokenizer"}),
        Scenario("tokenize with a symbol table", ["tokenize", "{CORPUS}", "--symbols", "{SYMBOLS}", "--print", "ids"],
                 {"CORPUS": CORPUS, "SYMBOLS": SYMBOLS}, {"CORPUS": "corpus", "SYMBOLS": "--symbols"}),
        Scenario("train", ["train", "{CORPUS}", "--valid", "{VALID}", "--config", "{CONFIG}", "--tokenizer", "{TOK}",
                           "--embeddings", "{VEC}", "--synonyms", "{SYN}", "--out", "{OUT}/m.pt", "--untied",
                           *TINY_TRAIN, "--json"],
                 {"CORPUS": CORPUS, "VALID": CORPUS[:200], "CONFIG": b"dropout: 0.1\n", "TOK": tokenizer,
                  "VEC": EMBEDDINGS, "SYN": b"cat dog\n"},
                 {"CORPUS": "corpus", "VALID": "--valid", "CONFIG": "--config", "TOK": "--tokenizer",
                  "VEC": "--embeddings", "SYN": "--synonyms"}, result="valid_ppl"),
        Scenario("train from a model", ["train", "{CORPUS}", "--valid", "{VALID}", "--init-from", "{INIT}",
                                        "--out", "{OUT}/m.pt", *TINY_TRAIN[10:], "--json"],
                 {"CORPUS": CORPUS, "VALID": CORPUS[:200], "INIT": model},
                 {"CORPUS": "corpus", "VALID": "--valid", "INIT": "--init-from"}, result="valid_ppl"),
        Scenario("eval a mix", ["eval", "{MODEL}", "{FILE}", "--mix-lm", "{ARPA}", "--fit-lambda", "{HELD}",
                                "--device", "cpu", "--config", "{ECONFIG}"],
                 {**word_model, "FILE": CORPUS, "ARPA": ARPA, "HELD": CORPUS[:300], "ECONFIG": b"json: true\n"},
                 {"MODEL": "model", "FILE": "file", "ARPA": "--mix-lm", "HELD": "--fit-lambda", "ECONFIG": "--config"}),
        Scenario("eval kaldi ids", ["eval", "{MODEL}", "--nbest", "{NBEST}", "--symbols", "{SYMBOLS}", "--nbest-acoustic",
                                    "{AC}", "--nbest-format", "kaldi", "--device", "cpu"],
                 {**word_model, "NBEST": KALDI_IDS, "SYMBOLS": SYMBOLS, "AC": ACOUSTIC},
                 {"MODEL": "model", "NBEST": "--nbest", "SYMBOLS": "--symbols", "AC": "--nbest-acoustic"}),
        Scenario("eval tune", ["eval", "{MODEL}", "--nbest", "{NBEST}", "--nbest-acoustic", "{AC}", "--references",
                               "{REF}", "--backward-model", "{BACK}", "--tune", "--tune-points", "3", "--device", "cpu",
                               "--json"],
                 {**word_model, "NBEST": KALDI_WORDS, "AC": ACOUSTIC, "REF": REFERENCES, "BACK": model},
                 {"MODEL": "model", "NBEST": "--nbest", "AC": "--nbest-acoustic", "REF": "--references",
                  "BACK": "--backward-model"}),
        Scenario("eval pairs", ["eval", "{MODEL}", "--pairs", "{PAIRS}", "--device", "cpu", "--json"],
                 {**word_model, "PAIRS": PAIRS}, {"MODEL": "model", "PAIRS": "--pairs"}),
        Scenario("generate", ["generate", "{MODEL}", "--max-tokens", "12", "--seed", "5", "--device", "cpu"],
                 word_model, {"MODEL": "model"}),
        Scenario("export", ["export", "{MODEL}", "--format", "embeddings", "--out", "{OUT}/m.vec"],
                 word_model, {"MODEL": "model"}, result="m.vec"),
        Scenario("analyze gradients", ["analyze", "gradients", "{MODEL}", "{TEXT}", "--max-distance", "4",
                                       "--positions", "2", "--device", "cpu", "--json"],
                 {**word_model, "TEXT": CORPUS}, {"MODEL": "models", "TEXT": "text"}),
        Scenario("compare", ["compare", "{CORPUS}", "--valid", "{VALID}", "--test", "{TEST}", "--pairs", "{PAIRS}",
                             "--config", "{CONFIG}", "--variants", "{VARIANTS}", "--budget", "1", "--out", "{OUT}/cmp",
                             "--device", "cpu", "--json"],
                 {"CORPUS": CORPUS, "VALID": CORPUS[:120], "TEST": CORPUS[:90], "PAIRS": PAIRS,
                  "CONFIG": b"hidden: 8\n", "VARIANTS": b"a: {dropout: 0.1}\nb: {dropout: 0.2}\n"},
                 {"CORPUS": "corpus", "VALID": "--valid", "TEST": "--test", "PAIRS": "--pairs", "CONFIG": "--config",
                  "VARIANTS": "--variants"}, result="seen", stdin=("CORPUS", "VARIANTS", "CONFIG")),
    ]


def path_options(command: str) -> set[str]:
    """The command's options and arguments whose values are strings or paths."""
    found = set()
    for name, leaf in _leaf_commands(typer.main.get_command(cli.app)):
        if name != command:
            continue
        # The signature typer reads: a command's own, or the one its field flags were added to.
        hints = {n: p.annotation for n, p in inspect.signature(COMMANDS[name], eval_str=True).parameters.items()}
        for param in leaf.params:
            hint = hints[param.name]
            kinds = {hint, *typing.get_args(hint), *(k for a in typing.get_args(hint) for k in typing.get_args(a))}
            if kinds & {str, Path}:
                found.add(param.opts[0])
    return found


def _leaf_commands(group, prefix=""):
    for name, command in getattr(group, "commands", {}).items():
        full = f"{prefix} {name}".strip()
        if getattr(command, "commands", None):
            yield from _leaf_commands(command, full)
        else:
            yield full, command


def test_every_path_option_is_an_input_here_or_named_as_not_one(saved_model):
    scenarios = _scenarios(b"", b"")
    for command in COMMANDS:
        covered = {option for s in scenarios if " ".join(s.args[:2]).startswith(command)
                   for option in s.options.values()}
        assert path_options(command) - NOT_INPUTS[command] - {"--resume"} == covered, command


class Run:
    """Runs a scenario in one folder, each input as the kind asked for."""

    def __init__(self, tmp_path: Path, fifo, monkeypatch) -> None:
        self.tmp_path, self.fifo, self.monkeypatch = tmp_path, fifo, monkeypatch
        self.count = 0

    def __call__(self, scenario: Scenario, kinds: dict[str, str]) -> tuple[int, str, str]:
        """(exit code, stderr, result) with each input named in ``kinds`` read as that kind
        (``file``, ``fifo`` or ``stdin``); the others are regular files."""
        self.count += 1
        folder = self.tmp_path / f"run{self.count}"
        folder.mkdir()
        paths, stdin = {"OUT": str(folder)}, None
        for name, data in scenario.inputs.items():
            kind = kinds.get(name, "file")
            if kind == "fifo":
                paths[name] = self.fifo(data, name.lower())
            elif kind == "stdin":
                paths[name], stdin = "-", data
            else:
                (folder / name.lower()).write_bytes(data)
                paths[name] = str(folder / name.lower())
        args = [re.sub(r"\{(\w+)\}", lambda m: paths[m.group(1)], arg) for arg in scenario.args]
        if scenario.args[0] == "compare":
            # The run's options.yaml holds what --config and --variants gave it.
            trainer = _fake_trainer(self.tmp_path)
            self.monkeypatch.setattr(compare_runs, "train_command", lambda c, run: [
                *trainer, run.model, c.corpus, c.valid, c.test, c.pairs, run.file("options.yaml")])
            self.monkeypatch.setattr(compare_runs, "measure_run", lambda c, run, trained, device: RunResult(
                variant=run.variant.name, seed=run.seed, folder=run.folder, valid_ppl=trained["best_valid_ppl"],
                test_ppl=None, params=1, tokens_per_s=1.0, steps=1, train_seconds=1.0, reach=None,
                pair_accuracy=None))
        result = CliRunner().invoke(cli.app, args, input=stdin, env={"RNNLM_DEBUG": None, "NO_COLOR": "1"})
        return result.exit_code, result.stderr, self._normalised(self._result(scenario, folder, result.stdout),
                                                                 paths, kinds)

    @staticmethod
    def _result(scenario: Scenario, folder: Path, stdout: str) -> str:
        if scenario.result == "stdout":
            # A report's label for a model is its file's stem, "stdin" for one read from there.
            return re.sub(r'"label": "[^"]*", ', "", stdout)
        if scenario.result == "valid_ppl":
            return repr(json.loads(stdout)["best_valid_ppl"]) if stdout.strip() else ""
        if scenario.result == "seen":
            return "\n".join(sorted(p.read_text() for p in (folder / "cmp").glob("*/seen")))
        return (folder / scenario.result).read_text() if (folder / scenario.result).exists() else ""

    @staticmethod
    def _normalised(text: str, paths: dict[str, str], kinds: dict[str, str]) -> str:
        """``text`` with each input's path (or ``stdin``) written as its name: reports name their inputs."""
        for name, path in sorted(paths.items(), key=lambda item: -len(item[1])):
            if path != "-":
                text = text.replace(path, f"<{name}>")
        for name, kind in kinds.items():
            if kind == "stdin":
                text = text.replace('"stdin"', f'"<{name}>"').replace("stdin:", f"<{name}>:")
                text = text.replace('"file": "-"', f'"file": "<{name}>"')  # eval's JSON names stdin as SRILM does
        return text


SCENARIOS = {scenario.name: scenario for scenario in _scenarios(b"", b"")}


@pytest.fixture
def scenarios(saved_model, word_tokenizer) -> dict[str, Scenario]:
    model = Path(saved_model[0]).read_bytes()
    tokenizer = json.dumps(word_tokenizer.to_dict()).encode()
    return {scenario.name: scenario for scenario in _scenarios(model, tokenizer)}


@pytest.fixture
def run(tmp_path, fifo, monkeypatch) -> Run:
    return Run(tmp_path, fifo, monkeypatch)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_input_a_fifo_at_once_gives_what_regular_files_give(name, scenarios, run):
    scenario = scenarios[name]
    code, stderr, expected = run(scenario, {})
    assert code == 0, stderr
    assert expected.strip()
    code, stderr, got = run(scenario, {input_name: "fifo" for input_name in scenario.inputs})
    assert code == 0, stderr
    assert got == expected


_FROM_FILES: dict[str, str] = {}
"""Each scenario's result with regular files (the same in every test: the inputs' bytes are)."""


@pytest.mark.parametrize("name,input_name", [(s.name, input_name) for s in SCENARIOS.values()
                                             for input_name in (s.stdin or s.inputs)])
def test_each_input_from_stdin_gives_what_a_regular_file_gives(name, input_name, scenarios, run):
    scenario = scenarios[name]
    if name not in _FROM_FILES:
        code, stderr, _FROM_FILES[name] = run(scenario, {})
        assert code == 0, stderr
    expected = _FROM_FILES[name]
    code, stderr, got = run(scenario, {input_name: "stdin"})
    assert code == 0, stderr
    assert got == expected


@pytest.mark.parametrize("name,first,second", [(s.name, a, b) for s in SCENARIOS.values()
                                               for a, b in itertools.combinations(s.inputs, 2)])
def test_two_inputs_from_stdin_are_refused_up_front(name, first, second, scenarios, run):
    code, stderr, _ = run(scenarios[name], {first: "stdin", second: "stdin"})
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "are both '-': standard input can be only one" in stderr


def test_an_output_named_dash_is_no_second_reader_of_stdin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the token file is written to a file named "-" here
    result = CliRunner().invoke(cli.app, ["tokenize", "-", "--out", "-"], input="the dog\n",
                                env={"RNNLM_DEBUG": None}, catch_exceptions=False)
    assert "standard input can be only one" not in result.stderr
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "-").stat().st_size > 0
