"""The variants ``rnnlm compare`` trains: from ``--vary KEY=V1,V2`` (a grid) or a YAML file.

A variant is a name and the training options it sets on top of the shared ones. Names
are folder names under the comparison's output folder: ``cell=lstm``, or
``cell=gru,dropout=0.2`` for a grid, or the YAML file's own names::

    # variants.yaml: one flat mapping of train options per variant
    base:            # optional: options every variant shares
      hidden: 128
    small:
      emb: 64
    tied:
      tied: true

Option names and values are those of ``rnnlm train --config`` files, checked the same way.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from rnnlm_cli.errors import UsageError
from rnnlm_cli.option_files import MAX_BYTES, parse_options
from rnnlm_cli.train.job import OPTIONS

BASE = "base"
"""The YAML key of the options every variant shares."""

OWNED = ("out", "valid", "resume", "init_from", "promote_if_better", "plot", "max_time")
"""Options the comparison sets itself for every run: where it writes, the budget, resuming."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$")
MAX_NAME = 128
"""Longest variant name: a folder name, with room under the file systems' 255 bytes."""
MAX_VARIANTS = 1000
"""Most variants one comparison trains; a grid is refused before it is built beyond that."""


@dataclass(frozen=True)
class Variant:
    """One setting to train: its name (a folder name) and the options it sets."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def check_option_names(options: dict[str, Any], where: str) -> None:
    """UsageError for a name ``rnnlm train`` does not know, or one the comparison sets itself."""
    for key in options:
        if key in OWNED:
            raise UsageError(f"{where}: {key} is set by rnnlm compare for every run (see --budget, --out)")
        if key not in OPTIONS:
            raise UsageError(f"{where}: unknown option {key!r}; names are those of 'rnnlm train' flags, e.g. hidden")


def check_variant_source(vary: list[str] | None, variants_file: str | None) -> None:
    """UsageError unless the variants come from exactly one place: ``--vary`` specs or a ``--variants`` file."""
    if bool(vary) == bool(variants_file):
        raise UsageError("give the variants by --vary KEY=V1,V2 or by --variants FILE (one of the two)")


def grid(specs: list[str]) -> list[Variant]:
    """``["cell=lstm,gru", "dropout=0,0.2"]`` -> the 4 combinations, named ``cell=lstm,dropout=0`` ...

    Each value is read as a YAML scalar, as in a --config file: ``0.2`` a number, ``true``
    a switch, ``lstm`` a word.
    """
    axes: list[tuple[str, list[tuple[str, Any]]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        texts = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(texts):
            raise UsageError(f"--vary {spec!r}: expected KEY=VALUE1,VALUE2,... (e.g. cell=lstm,gru,rnn)")
        if any(key == other for other, _ in axes):
            raise UsageError(f"--vary {key} is given twice: list all its values in one --vary")
        parsed = [(text, parse_options(f"{key}: {text}".encode(), f"--vary {key}")[key]) for text in texts]
        check_option_names({key: None}, f"--vary {key}")
        if len({text for text, _ in parsed}) != len(parsed):
            raise UsageError(f"--vary {key}: a value is listed twice")
        axes.append((key, parsed))
    size = math.prod(len(values) for _, values in axes)
    if size > MAX_VARIANTS:
        raise UsageError(f"--vary: the grid has {size:,} variants, more than {MAX_VARIANTS:,} a comparison trains; "
                         "vary fewer options or values at a time")
    variants = []
    for combination in itertools.product(*(values for _, values in axes)):
        name = ",".join(f"{key}={text}" for (key, _), (text, _) in zip(axes, combination))
        variants.append(Variant(_checked_name(name, "--vary"), {key: value for (key, _), (_, value) in zip(axes, combination)}))
    return variants


def read_variant_file(path: str) -> tuple[dict[str, Any], list[Variant]]:
    """(shared options, variants) of a YAML variants file; see the module's docstring."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the variants file ({exc.strerror})") from exc
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: over {MAX_BYTES >> 10} KiB, too large for a variants file")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_VariantLoader)  # noqa: S506 - a SafeLoader, narrowed
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except _Refused as exc:
        raise UsageError(f"{path}:{exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path}: expected a mapping of variant names to their options")
    base: dict[str, Any] = {}
    variants = []
    for name, options in data.items():
        if not isinstance(name, str):
            raise UsageError(f"{path}: variant name {name!r} is not a word")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise UsageError(f"{path}: variant {name}: expected a mapping of options (e.g. cell: gru)")
        flat = parse_options(yaml.safe_dump(options).encode(), f"{path}: {name}")
        check_option_names(flat, f"{path}: {name}")
        if name == BASE:
            base = flat
        else:
            variants.append(Variant(_checked_name(name, path), flat))
    if not variants:
        raise UsageError(f"{path}: no variants (only '{BASE}')")
    if len(variants) > MAX_VARIANTS:
        raise UsageError(f"{path}: {len(variants):,} variants, more than {MAX_VARIANTS:,} a comparison trains")
    return base, variants


def _checked_name(name: str, where: str) -> str:
    if len(name) > MAX_NAME:
        raise UsageError(f"{where}: the variant name {name[:40]!r}... has {len(name)} characters, more than a folder "
                         f"name takes here ({MAX_NAME}); name the variants in a --variants file")
    if not _NAME.match(name) or name in (".", ".."):
        raise UsageError(f"{where}: {name!r} cannot name a folder: use letters, digits and _ . , = + -")
    return name


class _Refused(yaml.MarkedYAMLError):
    pass


class _VariantLoader(yaml.SafeLoader):
    """PyYAML's safe loader for two levels of mappings of single values, refusing aliases
    and deeper nesting while it composes (as :mod:`rnnlm_cli.option_files` does for one level)."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(None, None, "aliases (*name) are not allowed; write the value out", mark)
        if not self.check_event(yaml.ScalarEvent) and (self._depth >= 2 or self.check_event(yaml.SequenceStartEvent)):
            mark = self.peek_event().start_mark
            problem = ("expected a mapping of variant names to their options" if self._depth == 0
                       else "a variant is a flat mapping of options to single values")
            raise _Refused(None, None, problem, mark)
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor):
        self._depth += 1
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self._depth -= 1
