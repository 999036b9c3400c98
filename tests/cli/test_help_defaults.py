"""`--help` shows, for every option backed by a dataclass field, that field's default.

The defaults are read from the classes here (``dataclasses.fields``) and compared with what
``rnnlm COMMAND --help`` prints, so a default changed in a class and not in the help, or a
help that shows a stale word, fails. (``rnnlm eval`` is checked in test_help_defaults_eval.py;
``export``'s options, --format and --out, have no dataclass behind them.)
"""

from __future__ import annotations

import dataclasses
import re

import click
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.cli.options import CHOICES_WIDTH, FITTED, FITTED_TO_EPOCHS
from rnnlm_cli.config import TokenizerConfig, TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.config import SamplingConfig
from rnnlm_cli.train.job import JobConfig

# Where each command's options live; the first class with a defaulted field of the option's
# name holds it (ModelConfig.vocab_size has no default: --vocab-size is the tokenizer's).
OWNERS = {
    "train": (ModelConfig, TrainConfig, TokenizerConfig, JobConfig),
    "tokenize": (TokenizerConfig,),
    "generate": (SamplingConfig,),
}
# Options whose field is named otherwise: --tokenizer learns a tokenizer of kind ... by default.
FIELD = {("train", "tokenizer"): (TokenizerConfig, "kind"), ("tokenize", "kind"): (TokenizerConfig, "kind")}
# Defaults that read as words; the meaning is the field's docstring's.
_HELD_OUT = TrainConfig()
WORDS = {("train", "adaptive_softmax", ""): "full softmax",
         # A bare run fits these to its corpus and device (rnnlm_cli.train.fitting).
         **{("train", name, getattr(owner, name)): FITTED
            for owner, name in ((ModelConfig, "layers"), (ModelConfig, "hidden"), (ModelConfig, "emb"),
                                (TrainConfig, "batch_size"), (TrainConfig, "lr"))},
         # ... and these to the epochs it plans (rnnlm_cli.train.regularization_fit).
         **{("train", name, getattr(ModelConfig, name)): FITTED_TO_EPOCHS for name in ("dropout",)},
         ("generate", "seed", None): "random",
         ("train", "valid", None): f"hold out the corpus' last {round(_HELD_OUT.valid_fraction * 100)}%, "
                                   f"at most {_HELD_OUT.valid_max_tokens // 10**6}M tokens"}
# Fields set only in a --config file or a preset (too fine-grained for a flag).
YAML_ONLY = {"sample_lines", "valid_fraction", "valid_max_tokens", "eval_batch_size"}


def help_rows(command: str) -> dict[str, str]:
    """Option name (first flag) -> its row of the rendered help, on a terminal wide enough for one line each."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "600", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines():
        found = re.match(r"│ (?:\*)?\s*(--[\w-]+)", line)  # "*": a required option
        if found:
            rows[found.group(1)] = line
    return rows


def backing_field(command: str, name: str) -> tuple[type, dataclasses.Field] | None:
    owner, field_name = FIELD.get((command, name), (None, name))
    for cls in (owner,) if owner else OWNERS[command]:
        for spec in dataclasses.fields(cls):
            if spec.name == field_name and spec.default is not dataclasses.MISSING:
                return cls, spec
    return None


def options(command: str):
    click_command = typer.main.get_command(app).commands[command]
    return [param for param in click_command.params if param.opts[0].startswith("--")]


@pytest.mark.parametrize("command", sorted(OWNERS))
def test_every_option_with_a_field_shows_its_default(command):
    rows = help_rows(command)
    checked = 0
    for param in options(command):
        backed = backing_field(command, param.name)
        if backed is None:
            continue
        default = backed[1].default
        shown = re.findall(r"\[default: ([^\]]*)\]", rows[param.opts[0]])
        checked += 1
        if param.is_flag and not param.secondary_opts:
            # A switch turns its field on: off must be the default, and needs no words.
            assert default is False and shown == [], (param.name, default, shown)
            continue
        word = WORDS.get((command, param.name, default))
        if param.secondary_opts:  # --tied/--untied: the default is named by its flag
            expected = [(param.opts if default else param.secondary_opts)[0].lstrip("-")]
        elif word is not None:
            expected = [word]
        elif default is None:
            expected = []  # an input not given: nothing to read
        elif default == "":
            expected = ["none"]
        else:
            expected = [str(default)]
        if isinstance(default, float) and shown and word is None:
            assert len(shown) == 1 and float(shown[0]) == default, (param.name, default, shown)
        else:
            assert shown == expected, (param.name, default, shown)
    assert checked >= 5, checked  # the owners above still hold this command's options


def test_every_train_field_is_a_flag_or_yaml_only():
    flags = {param.name for param in options("train")}
    fields = {spec.name for cls in OWNERS["train"] for spec in dataclasses.fields(cls)} - {"kind"}
    assert fields - flags == YAML_ONLY
    assert YAML_ONLY <= {spec.name for spec in dataclasses.fields(TrainConfig)} | {"sample_lines"}


def test_the_command_line_starts_without_torch():
    # Every command module is imported at start; torch takes seconds to import.
    code = "import sys, rnnlm_cli.cli; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch" not in out, out


def test_switches_show_no_type_and_choices_show_their_values():
    import dataclasses as _dc

    from rnnlm_cli.models.registry import CELLS, registered_cell

    rows = help_rows("train")
    for flag in ("--json", "--plot", "--tied", "--show-config", "--deterministic"):
        assert "<bool>" not in rows[flag], rows[flag]
    # A short list of choices is the metavar; a long one is named, and the help lists it.
    assert re.search(r"--sp-model\s+bpe\|unigram\s", rows["--sp-model"]), rows["--sp-model"]
    assert re.search(r"--tokenizer\s+KIND\|FILE\s+word, char, byte, sentencepiece", rows["--tokenizer"])
    assert re.search(r"--cell\s+CELL\s+Recurrent cell: " + ", ".join(CELLS), rows["--cell"]), rows["--cell"]
    # A cell registered after the command line was built is listed too.
    with registered_cell("elman2", _dc.replace(CELLS["rnn"])):
        assert "lstm, gru, rnn, mogrifier, elman2" in help_rows("train")["--cell"]
    assert "elman2" not in help_rows("train")["--cell"]


@pytest.mark.parametrize("command", ["tokenize", "train", "eval", "generate", "export", "compare", "analyze gradients"])
def test_a_list_of_choices_too_long_for_the_metavar_is_named_and_listed_in_the_help(command):
    """At 80 columns a metavar of 20 or 30 characters leaves the help a 20-character column; the
    choices it held must still be read in the help, each one."""
    group = typer.main.get_command(app)
    ctx = click.Context(group)
    for name in command.split():
        leaf = group.get_command(ctx, name)
        group, ctx = leaf, click.Context(leaf, parent=ctx)
    for param in leaf.params:
        assert "|" not in (param.metavar or "") or len(param.metavar) <= CHOICES_WIDTH or param.metavar == "KIND|FILE"
        for choice in getattr(param, "listed_choices", ()):
            assert re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", param.help), (param.name, choice, param.help)


@pytest.mark.parametrize("command", ["tokenize", "train", "eval", "generate", "export", "compare"])
def test_option_metavars_are_the_conventional_capitals(command):
    rows = help_rows(command)
    for flag, row in rows.items():
        assert not re.search(r"<(str|int|float|bool|path|list\[\w+\])>", row), row  # Typer's own
    files = {"tokenize": ["--tokenizer", "--symbols", "--out"], "train": ["--valid", "--config", "--out"],
             "eval": ["--nbest", "--pairs", "--mix-lm", "--fit-lambda", "--symbols"], "generate": [],
             "export": ["--out"], "compare": ["--valid", "--test", "--pairs", "--variants"]}[command]
    for flag in files:
        assert re.search(rf"│ \*?\s*{flag}\s+(-\w\s+)?FILE\b", rows[flag]), rows[flag]
    numbers = {"train": {"--lr": "FLOAT", "--epochs": "INT"}, "generate": {"--top-p": "FLOAT", "--top-k": "INT"},
               "eval": {"--lambda": "FLOAT", "--cache": "INT"}}.get(command, {})
    for flag, metavar in numbers.items():
        assert re.search(rf"│ \*?\s*{flag}\s+{metavar}\b", rows[flag]), rows[flag]
