"""Reading option files (``--config`` YAML, presets) without trusting them.

An option file is a flat mapping of option names to single values: numbers, words,
true/false. Anything else is refused before it is built, so the file decides neither how
much memory nor how much time reading it takes:

* at most :data:`MAX_BYTES` bytes, strict UTF-8;
* no aliases (``*name``): YAML's "billion laughs" nests aliases so that a few hundred
  bytes stand for gigabytes once anything walks or prints the value;
* no nested lists or mappings, and no non-text keys;
* dates stay text (``out: 2024-01-01`` is a file name, not a datetime).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from rnnlm_cli.errors import UsageError, shown

MAX_BYTES = 1 << 16
"""Largest option file read; real ones are a few hundred bytes."""
_SCALARS = (str, int, float, bool)


class _Refused(yaml.MarkedYAMLError):
    pass


class _OptionLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases and nesting while it composes, before any
    object is built (composing is recursive: a deep nest would otherwise exhaust the stack)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(None, None, "aliases (*name) are not allowed in an option file; write the value out", mark)
        if parent is not None and not self.check_event(yaml.ScalarEvent):
            mark = self.peek_event().start_mark
            raise _Refused(None, None, "option values are single values: no nested lists or mappings", mark)
        return super().compose_node(parent, index)


_OptionLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_options(path: str) -> dict[str, Any]:
    """The options in the YAML file ``path`` (``-``: stdin); a missing file is the caller's to report."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file ({exc.strerror})") from exc
    return parse_options(raw, "stdin" if path == "-" else path)


def parse_options(raw: bytes, name: str) -> dict[str, Any]:
    """Option names (dashes turned into underscores) to values, from the bytes of a YAML file."""
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{name}: over {MAX_BYTES >> 10} KiB, too large for an option file; "
                         "give the options that differ from the defaults")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start}); "
                         "save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_OptionLoader)  # noqa: S506 - a SafeLoader, narrowed further
    except _Refused as exc:
        raise UsageError(f"{name}:{exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (ValueError, OverflowError) as exc:
        # PyYAML builds numbers with int(): one of thousands of digits is refused there.
        raise UsageError(f"{name}: a value cannot be read ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected a mapping of option names to values")
    options: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise UsageError(f"{name}: option name {shown(key)} is not a word; names are as the flags, e.g. hidden: 512")
        if value is not None and not isinstance(value, _SCALARS):
            raise UsageError(f"{name}: option {key}: expected a number, a word or true/false, "
                             f"got {type(value).__name__}")
        options[key.replace("-", "_")] = value
    return options
