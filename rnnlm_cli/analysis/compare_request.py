"""One ``rnnlm compare`` call as the user gave it, checked as a whole before any run trains."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlm_cli.analysis.variants import check_variant_source
from rnnlm_cli.config import TrainConfig, check_values

FLAGS = {"corpus": "CORPUS", "json_output": "--json"}
"""Fields whose flag (or argument) is not ``--`` and the field's name with dashes."""


@dataclass(frozen=True)
class CompareRequest:
    """The options of one ``rnnlm compare`` call."""

    corpus: str
    """Training text (plain or .gz) or a token file."""
    valid: str
    """Validation text: keeps each run's best model, and the gradient reach."""
    budget: float
    """Seconds of training per run (each run's --max-time)."""
    vary: tuple[str, ...] = ()
    """A train option and its values; several --vary make a grid."""
    variants: str | None = None
    """YAML file: variant name -> its train options ('base': shared)."""
    test: str | None = None
    """Test text: each model's perplexity on it (stream context)."""
    pairs: str | None = None
    """Minimal pairs (as 'rnnlm eval --pairs' reads): each model's accuracy."""
    preset: str | None = None
    """A preset every run starts from (see 'rnnlm train --preset')."""
    config: str | None = None
    """YAML train options every run shares."""
    repeat: int = 1
    """Runs per variant, with seeds --seed, --seed + 1, ...; reports mean ± std."""
    seed: int = TrainConfig.seed
    """Seed of each variant's first run."""
    out: str = "runs/compare"
    """Folder that keeps every run, its models and curves.png."""
    json_output: bool = False
    """Print one JSON object: every run and the per-variant summary."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps: where runs train and are measured."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "vary", tuple(self.vary))  # a list from the command line
        check_values(self, FLAGS)
        check_variant_source(list(self.vary), self.variants)

    def inputs(self) -> dict[str, str]:
        """The files every run reads, by option name (``corpus`` for CORPUS)."""
        named = {"corpus": self.corpus, "valid": self.valid, "test": self.test, "pairs": self.pairs,
                 "variants": self.variants, "config": self.config}
        return {name: path for name, path in named.items() if path is not None}
