"""Every command's options, as ``--help`` lists them, against a record kept in the repository.

``tests/fixtures/cli_options.json`` holds, for each command, each option's name, flags,
metavar (its choices, or its type), the choices a long list's metavar names (listed in the
help instead) and the default its help shows (written in the help or
added by typer), recorded from the hand-written signatures before ``train``'s and ``eval``'s
flags were made from their dataclasses' fields (rnnlm_cli.cli.field_flags). A flag renamed, a choice lost or a default shown differently
fails here; an option added on purpose is recorded by running this file as a script::

    python3 tests/cli/test_option_snapshot.py > tests/fixtures/cli_options.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import typer

from rnnlm_cli.cli import app
from rnnlm_cli.cli.options import render

RECORD = Path(__file__).resolve().parents[1] / "fixtures" / "cli_options.json"
SHOWN_DEFAULT = re.compile(r"\\?\[default: (.*?)\]")


def shown_default(param: click.Parameter) -> str | None:
    """The default ``--help`` shows: written into the help, or added by typer from the parameter's
    own default (an option whose default is a value, not None or off)."""
    written = SHOWN_DEFAULT.search(getattr(param, "help", None) or "")
    if written:
        return written.group(1)
    if (param.param_type_name == "option" and getattr(param, "show_default", False) and not getattr(param, "is_flag", False)
            and param.default is not None and param.default is not False):
        return render(param.default)
    return None


def _rows(command: click.Command) -> list[dict]:
    return [{"name": param.name, "flags": [*param.opts, *getattr(param, "secondary_opts", [])],
             "metavar": param.metavar, "choices": list(getattr(param, "listed_choices", ())),
             "default": shown_default(param)} for param in command.params]


def options_now() -> dict[str, list[dict]]:
    """Command path ("eval", "analyze gradients") -> its options, as the app builds them for --help."""
    found: dict[str, list[dict]] = {}

    def walk(group: click.Group, ctx: click.Context, prefix: str) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)  # the app's own hook: metavars, the cell registry
            if isinstance(command, click.Group):
                walk(command, click.Context(command, parent=ctx), f"{prefix}{name} ")
            else:
                found[prefix + name] = _rows(command)

    root = typer.main.get_command(app)
    walk(root, click.Context(root), "")
    return found


def test_every_option_keeps_its_name_flags_choices_and_default():
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    now = options_now()
    assert sorted(now) == sorted(recorded)
    for command, rows in recorded.items():
        assert now[command] == rows, command


def test_the_record_covers_every_option_of_train():
    recorded = {row["name"] for row in json.loads(RECORD.read_text(encoding="utf-8"))["train"]}
    assert {"dropout", "tied", "promote_if_better", "max_wall_time", "show_config"} <= recorded
    assert len(recorded) > 60


if __name__ == "__main__":
    json.dump(options_now(), sys.stdout, indent=1, sort_keys=True)
    print()
