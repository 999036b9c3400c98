"""Named training recipes shipped with rnnlm: the YAML files beside this module.

A preset sits between the built-in defaults and the user's own ``--config`` file:
defaults < preset < --config YAML < flags. Its first comment line describes it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from rnnlm_cli.errors import UsageError

_PACKAGE = __name__


def _files() -> dict[str, Any]:
    return {entry.name[:-5]: entry for entry in resources.files(_PACKAGE).iterdir()
            if entry.name.endswith(".yaml")}


def list_presets() -> dict[str, str]:
    """Preset names and their one-line descriptions, sorted by name."""
    described = {}
    for name, entry in sorted(_files().items()):
        lines = entry.read_text(encoding="utf-8").splitlines()
        described[name] = lines[0].lstrip("# ").strip() if lines else ""
    return described


def load_preset(name: str) -> dict[str, Any]:
    """The option values of preset ``name`` (keys with underscores), read as a --config file is."""
    from rnnlm_cli.option_files import parse_options

    files = _files()
    if name not in files:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(sorted(files))}")
    return parse_options(files[name].read_bytes(), f"preset {name}")
