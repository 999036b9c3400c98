"""Flags made from the config dataclasses' fields: one place per option.

A field of a config class (``ModelConfig``, ``TrainConfig``...) is declared once, with its
type, its default and a docstring. A command lists the fields it offers as flags
(:class:`FieldFlag`) and :func:`field_flags` puts them into the command's signature, each
with the field's type, the first paragraph of its docstring as the help and its default shown
as :func:`~rnnlm_cli.cli.options.with_default` shows it. A new option is then one field and
one line in that list, and the help cannot drift from the field.

The docstrings are read from the classes' source (``ast``), which the config modules keep
free of torch, so ``rnnlm --help`` stays fast. Their later paragraphs are notes for whoever
changes the default (measurements, references) and stay out of the help.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

import typer

from rnnlm_cli.cli.options import default_text, switch


@dataclass(frozen=True)
class FieldFlag:
    """One flag backed by the field ``name`` of ``owner``."""

    owner: type
    name: str
    decls: tuple[str, ...] = ()
    """The flag's names, when not ``--name-with-dashes`` (``("--out", "-o")``, ``("--tied/--untied",)``)."""
    param: str | None = None
    """The parameter (and option) name, when not the field's (``--tokenizer`` sets JobConfig.tokenizer)."""
    metavar: str | None = None
    """What stands for the value in the help (``FILE``, ``lstm|gru|rnn``); None: its type's."""
    shown_default: str | None = None
    """The default the help shows instead of the field's: what a run does when it is not given."""
    unset: str | None = None
    """Added to the help after a semicolon: how a run chooses the value nobody gave."""
    labels: Mapping[Any, str] | None = None
    """Defaults that read better as words (``{False: "untied"}``)."""

    @property
    def parameter(self) -> str:
        return self.param or self.name


@functools.cache
def _classes(module: str) -> dict[str, ast.ClassDef]:
    """The top-level classes of ``module``'s source by name, parsed once: every command module
    is imported when ``rnnlm`` starts, and ``inspect.getsource(cls)`` would parse the whole
    module again for each class."""
    tree = ast.parse(inspect.getsource(sys.modules[module]))
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


@functools.cache
def _hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


@functools.cache
def field_docs(owner: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under it), from ``owner``'s source."""
    body = _classes(owner.__module__)[owner.__name__].body  # the class statement's own statements
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def field_help(owner: type, name: str) -> str:
    """The help of a flag backed by ``owner.name``: its docstring's first paragraph, on one line,
    without its final full stop (the shown default ends the sentence)."""
    try:
        doc = field_docs(owner)[name]
    except KeyError:
        raise LookupError(f"{owner.__name__}.{name} has no docstring to be its flag's help") from None
    return " ".join(doc.split("\n\n")[0].split()).rstrip(".")


def _value_type(owner: type, name: str) -> Any:
    """The type a flag for ``owner.name`` parses: the field's, without its ``| None``; a
    ``tuple[str, ...]`` field is a repeatable flag, a list."""
    hint = _hints(owner)[name]
    if typing.get_origin(hint) in (Union, types.UnionType):
        hint = next(kind for kind in typing.get_args(hint) if kind is not type(None))
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    return hint


def _option(spec: FieldFlag) -> tuple[Any, Any]:
    """(the typer option, the parameter's annotation) for ``spec``."""
    owner, name = spec.owner, spec.name
    kind = _value_type(owner, name)
    decls = spec.decls or ("--" + spec.parameter.replace("_", "-"),)
    text = field_help(owner, name) + (f"; {spec.unset}" if spec.unset else "")
    field = next(f for f in dataclasses.fields(owner) if f.name == name)
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        # A field without a default is an option the user must give (typer says [required]).
        extra = {} if spec.metavar is None else {"metavar": spec.metavar}
        return typer.Option(..., *decls, help=text + ".", **extra), kind
    if kind is bool and "/" not in decls[0] and field.default is False:
        # An on-switch: it takes no value, and its default (off) goes without saying.
        return switch(None, *decls, help=text + "."), Optional[bool]
    if spec.shown_default is not None:
        shown = f" \\[default: {spec.shown_default}]"
    elif field.default is None or field.default == ():  # nothing given is not a default worth a word
        shown = ""
    else:
        shown = " " + default_text(owner, name, spec.labels)
    options: dict[str, Any] = {"help": f"{text}{shown}."}
    if kind is bool:
        options["metavar"] = ""
    elif spec.metavar is not None:
        options["metavar"] = spec.metavar
    return typer.Option(None, *decls, **options), Optional[kind]


def field_flags(*order: Union[str, FieldFlag]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator giving a command the flags of ``order``'s :class:`FieldFlag` entries, placed
    among the function's own parameters (named by the strings of ``order``) as listed there; the
    function takes the generated ones as ``**options`` (or reads ``ctx.params``)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        own = {param.name: param for param in inspect.signature(function, eval_str=True).parameters.values()
               if param.kind is not inspect.Parameter.VAR_KEYWORD}
        listed = [entry for entry in order if isinstance(entry, str)]
        if sorted(listed) != sorted(own):
            raise TypeError(f"{function.__name__}: field_flags must place each of its own parameters once: "
                            f"{sorted(set(own) ^ set(listed))}")
        parameters = []
        for entry in order:
            if isinstance(entry, str):
                parameters.append(own[entry].replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            option, annotation = _option(entry)
            parameters.append(inspect.Parameter(entry.parameter, inspect.Parameter.KEYWORD_ONLY,
                                                default=option, annotation=annotation))
        function.__signature__ = inspect.Signature(parameters)
        return function

    return decorate


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """The flags of ``options`` the user gave: one not given is None, and its field's own
    default applies when the dataclass is built from what is left."""
    return {name: value for name, value in options.items() if value is not None}
