"""`rnnlm eval --help` shows, for every option backed by a dataclass field, that field's default.

The defaults are read from ScoringConfig and NBestConfig here and compared with what the
rendered help prints, so a default changed in a class and not in the help fails; every
option of ``eval`` is either mapped to its field below or listed as having none, so a new
option has to be placed in one of the two.
"""

from __future__ import annotations

import dataclasses
import re

import typer

from rnnlm_cli.cli import app
from rnnlm_cli.score.scoring_config import NBestConfig, ScoringConfig

from test_help_defaults import help_rows

# Option (first flag) -> the field behind it, where the names differ or the class is not ScoringConfig.
RENAMED = {"--lambda": (ScoringConfig, "mix_weight"), "--nbest-format": (NBestConfig, "format"),
           "--output": (NBestConfig, "output"), "--cost": (NBestConfig, "cost"), "--symbols": (NBestConfig, "symbols"),
           "--carry-state": (NBestConfig, "carry_state"),
           "--nbest-acoustic": (NBestConfig, "acoustic"), "--nbest-sort": (NBestConfig, "sort")}
# Options no dataclass field stands behind: outputs, input files, the device, decoding strictness.
UNBACKED = {"--debug", "--json", "--per-sentence", "--query", "--format", "--mix-lm", "--fit-lambda", "--nbest", "--nbest-best",
            "--pairs", "--mix-lm-backend", "--backward-model", "--tune", "--references", "--tune-lm-weights",
            "--tune-word-penalties", "--tune-points", "--plot",
            "--device", "--strict", "--config", "--help"}


def options():
    command = typer.main.get_command(app).commands["eval"]
    return [param for param in command.params if param.opts[0].startswith("--")]


def backing_field(flag: str) -> tuple[type, str] | None:
    if flag in RENAMED:
        return RENAMED[flag]
    name = flag[2:].replace("-", "_")
    return (ScoringConfig, name) if name in {spec.name for spec in dataclasses.fields(ScoringConfig)} else None


def parsed(shown: str, default):
    """The shown text read as the type of ``default``: "1" shows the float 1.0."""
    return type(default)(shown) if isinstance(default, (int, float)) and not isinstance(default, bool) else shown


def test_every_option_is_backed_by_a_field_or_listed_as_unbacked():
    flags = {param.opts[0] for param in options()} | {"--help"}
    backed = {flag for flag in flags if backing_field(flag) is not None}
    assert backed.isdisjoint(UNBACKED)
    assert flags == backed | UNBACKED, flags ^ (backed | UNBACKED)
    # Every field of ScoringConfig is an option of eval: none is settable only from Python.
    fields = {backing_field(flag) for flag in backed}
    assert {(ScoringConfig, spec.name) for spec in dataclasses.fields(ScoringConfig)} <= fields
    assert {(NBestConfig, spec.name) for spec in dataclasses.fields(NBestConfig)} <= fields


COMPUTED = {"dynamic_lr": ["fitted to the model"]}
"""Fields whose None default stands for a value computed when the option is not given."""


def test_every_option_with_a_field_shows_its_default():
    rows = help_rows("eval")
    checked = 0
    for param in options():
        backed = backing_field(param.opts[0])
        if backed is None:
            continue
        cls, name = backed
        default = next(spec.default for spec in dataclasses.fields(cls) if spec.name == name)
        shown = re.findall(r"\[default: ([^\]]*)\]", rows[param.opts[0]])
        checked += 1
        if param.is_flag:
            # A switch turns its field on: off must be the default, and needs no words (not given,
            # the flag is None: the field's default applies).
            assert default is False and param.default in (False, None) and shown == [], (param.name, default, shown)
        elif default is None:
            # None means "not given"; where the value is then computed, the help says how.
            assert param.default is None and shown == COMPUTED.get(name, []), (param.name, shown)
        else:
            assert len(shown) == 1, (param.name, rows[param.opts[0]])
            # --context's default turns to sentence with --query or --nbest; the help says so after a ';'.
            assert parsed(shown[0].split(";")[0], default) == default, (param.name, shown, default)
            # Typer's own default is the field's, or None: then the field's default applies when not given.
            assert param.default in (default, None), (param.name, param.default, default)
    assert checked == 23


def test_the_shown_defaults_are_the_numbers_the_classes_hold_today():
    """A spot check against figures written out here, in case both the help and the classes drift."""
    rows = help_rows("eval")
    for flag, text in {"--cache-theta": "0.5", "--cache-lambda": "0.2", "--lambda": "0.5",
                       "--dynamic-lr": "fitted to the model", "--dynamic-segment": "96", "--dynamic-decay": "0.01",
                       "--dynamic-rule": "rms", "--dynamic-weights": "output", "--lm-weight": "1", "--word-penalty": "0", "--cache": "0",
                       "--backward-weight": "0.5; searched with --tune", "--tune-points": "21",
                       "--nbest-format": "auto", "--amp": "off", "--context": "stream; sentence with --query"}.items():
        assert f"[default: {text}]" in rows[flag], (flag, rows[flag])
