"""Help texts whose defaults come from the dataclass fields behind the options.

A hand-written "[default: 0.2]" drifts from the field it repeats; here it is rendered from
the field's default instead::

    help=with_default("Dropout on embeddings, between layers and outputs", ModelConfig, "dropout")
    # -> "Dropout on embeddings, between layers and outputs \\[default: 0.2]."

(the backslash keeps rich from reading "[default: ...]" as a style tag). The config classes
import no torch (every command module is imported when ``rnnlm`` starts, and torch takes
seconds), so the help can read them directly. tests/cli/test_help_defaults.py checks every
shown default against the classes, and that ``rnnlm`` starts without torch.
"""

from __future__ import annotations

import inspect
import typing

import dataclasses
from typing import Any, Mapping



def default_of(owner: type, name: str) -> Any:
    """The default of field ``name`` of ``owner``; LookupError when it has none."""
    for spec in dataclasses.fields(owner):
        if spec.name == name:
            if spec.default is not dataclasses.MISSING:
                return spec.default
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
            raise LookupError(f"{owner.__name__}.{name} has no default")
    raise LookupError(f"{owner.__name__} has no field {name!r}")


def render(value: Any, labels: Mapping[Any, str] | None = None) -> str:
    """A default as the help shows it: ``labels[value]`` where given, else 0.25, 4 (not 4.0), word, true."""
    if labels is not None and value in labels:
        return labels[value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None or value == "":
        return "none"
    return str(value)


def default_text(owner: type, name: str, labels: Mapping[Any, str] | None = None) -> str:
    """``\\[default: X]`` for field ``name`` of ``owner``; ``labels`` names values that read
    better as words (``{False: "untied", True: "tied"}``). A value without a label shows as is,
    so a changed default never shows a stale word."""
    return f"\\[default: {render(default_of(owner, name), labels)}]"


def with_default(text: str, owner: type, name: str, labels: Mapping[Any, str] | None = None) -> str:
    """``text`` followed by the field's default, as every option's help ends: "Text \\[default: X]."."""
    return f"{text} {default_text(owner, name, labels)}."


FITTED = "fitted to the corpus and device"
"""The default shown for an option a bare ``rnnlm train`` chooses (rnnlm_cli.train.fitting)."""


FITTED_TO_EPOCHS = "fitted to the epochs the run plans"
"""The default shown for a regularisation option a run chooses (rnnlm_cli.train.regularization_fit)."""


def switch(default: Any, *names: str, **options: Any) -> Any:
    """A flag option: it takes no value, so its help shows no type (typer would show <bool>)."""
    import typer

    return typer.Option(default, *names, metavar="", **options)


def choices(*names: str) -> str:
    """The metavar of an option that takes one of ``names``: ``word|char|byte``."""
    return "|".join(names)


_TYPE_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


def conventional_metavars(command) -> None:
    """Metavars as Unix help writes them, where an option gives none of its own: an argument's
    name in capitals (``MODEL``), an option's type (``INT``, ``FLOAT``, ``TEXT``). A file option
    says ``FILE`` itself (``metavar="FILE"``); a switch's is empty, a choice lists its values."""
    # The command's signature as typer read it: the function's own, or the one field_flags made.
    hints = {name: param.annotation for name, param in
             inspect.signature(inspect.unwrap(command.callback), eval_str=True).parameters.items()}
    for param in command.params:
        _name_long_choices(param)
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            param.metavar = param.name.upper() + ("..." if param.nargs == -1 else "")
            continue
        hint = hints.get(param.name)
        kinds = (hint, *typing.get_args(hint), *(k for arg in typing.get_args(hint) for k in typing.get_args(arg)))
        param.metavar = next((_TYPE_METAVARS[kind] for kind in kinds if kind in _TYPE_METAVARS), None)


CHOICES_WIDTH = 12
"""Widest list of choices a metavar shows (``bpe|unigram``). A longer one would take the
width of the help beside it: at 80 columns rich leaves a 20-character column for the text."""
_CHOICE_NAMES = {"tokenizer": "KIND|FILE", "nbest_output": "OUTPUT", "nbest_format": "FORMAT", "mix_lm_backend": "BACKEND"}
"""Metavars for long lists of choices, where the option's name in capitals is not the word."""


def _name_long_choices(param) -> None:
    """A metavar listing more choices than :data:`CHOICES_WIDTH` holds says what is chosen
    (``CELL``, ``DEVICE``) instead; the help names each choice (a test checks), and
    ``param.listed_choices`` keeps them."""
    metavar = param.metavar or ""
    if "|" not in metavar or len(metavar) <= CHOICES_WIDTH:
        return
    param.listed_choices = tuple(choice for choice in metavar.split("|") if choice != "FILE")
    param.metavar = _CHOICE_NAMES.get(param.name, param.name.upper())
