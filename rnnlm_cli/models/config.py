"""The shape of a recurrent language model: the config stored in every checkpoint.

It lives beside the models, not in :mod:`rnnlm_cli.config`, because it checks its cell against
the cell registry: a cell registered there is a valid ``--cell`` with nothing else to edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnlm_cli.config import _check, check_values
from rnnlm_cli.models.output_layer import AUTO, check_spec, cutoffs_for
from rnnlm_cli.models.registry import CELLS, IMPLS, CellSpec, cell_options


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a recurrent language model; stored in every checkpoint."""

    vocab_size: int
    """Number of token ids the embedding and softmax cover."""
    cell: str = "lstm"
    """Recurrent cell: a name in the cell registry (lstm, gru, rnn (tanh), mogrifier, or one registered)."""
    impl: str = "fused"
    """fused: torch's cuDNN/oneDNN kernels; reference: the gate equations written out."""
    emb: int = 128
    """Embedding size."""
    hidden: int = 256
    """Hidden units per layer."""
    layers: int = 2
    """Stacked recurrent layers."""
    dropout: float = 0.2
    """Dropout on embeddings, between layers and before the softmax."""
    tied: bool = False
    """Share the input embedding with the output softmax (Press & Wolf, 2017)."""
    dropout_emb: float = 0.0
    """Embedding dropout: drop whole words, i.e. rows of the embedding matrix (Gal & Ghahramani, 2016)."""
    dropout_input: float = -1.0
    """Dropout on the embeddings fed to the first layer; -1: the value of --dropout."""
    dropout_hidden: float = -1.0
    """Dropout between recurrent layers; -1: the value of --dropout."""
    dropout_output: float = -1.0
    """Dropout on the last layer's output, before the softmax; -1: the value of --dropout."""
    locked_dropout: bool = False
    """Variational (locked) dropout: one mask per sequence, shared by all time steps."""
    weight_drop: float = 0.0
    """DropConnect on the hidden-to-hidden matrices (Merity et al., 2018)."""
    attention: int = 0
    """Causal dot-product attention over the last N hidden states before the softmax (0: off)."""
    mogrifier_rounds: int = 5
    """mogrifier cell: rounds of mutual gating of input and state (Melis et al., 2020)."""
    adaptive_softmax: str = "auto"
    """Adaptive softmax cutoffs (Grave et al., 2017): token counts "2000,10000", shares of the
    vocabulary "3%,15%,45%", "auto" (from the training tokens' frequencies; the full softmax for
    a vocabulary under 4,000 or a --tied model), or "" (the full softmax).

    "auto" is resolved when training starts; a model built without training gets the full softmax."""
    adaptive_div: float = 2.0
    """Adaptive softmax: each tail cluster's projection is this many times narrower than the one
    before it (the first is hidden / adaptive_div wide; torch's default and rnnlm 0.2's: 4).

    2 rather than torch's 4: on a 1M-word,
    10k-vocabulary corpus a 1x256 LSTM's test ppl after 3 epochs is 85.4 with 2, 86.4 with 3
    and 88.9 with 4 (whose rarest cluster is predicted through 4 features), 87.8 with 1, for 6%
    fewer tokens a second; on WikiText-2 after one epoch 169.9 against 178.4 with 4."""

    def __post_init__(self) -> None:
        check_values(self, {"vocab_size": "the vocabulary size"})
        _check(self.cell in CELLS, f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        unknown = [name for name in self.cell_spec.config_options if name not in self.__dataclass_fields__]
        if unknown:  # a registration mistake, not the user's
            raise ValueError(f"cell {self.cell!r} is registered with options that are not ModelConfig fields: "
                             f"{', '.join(unknown)}")
        _check(self.impl in IMPLS, f"unknown implementation {self.impl!r}; choose one of {', '.join(IMPLS)}")
        _check(self.vocab_size >= 2, f"vocabulary size must be at least 2, got {self.vocab_size}")
        for name in ("emb", "hidden", "layers"):
            value = getattr(self, name)
            _check(1 <= value <= 65536, f"--{name} must be between 1 and 65536, got {value}")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        for name in ("dropout_emb", "weight_drop"):
            _check(0.0 <= getattr(self, name) < 1.0, f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        for name in ("dropout_input", "dropout_hidden", "dropout_output"):
            value = getattr(self, name)
            _check(value == -1.0 or 0.0 <= value < 1.0,
                   f"--{name.replace('_', '-')} must be in [0, 1) (or -1 for --dropout), got {value}")
        _check(0 <= self.attention <= 65536, f"--attention must be between 0 and 65536, got {self.attention}")
        _check(0 <= self.mogrifier_rounds <= 16, f"--mogrifier-rounds must be between 0 and 16, got {self.mogrifier_rounds}")
        check_spec(self.adaptive_softmax)
        _check(1.0 <= self.adaptive_div <= 64.0, f"--adaptive-div must be between 1 and 64, got {self.adaptive_div}")
        _check(self.adaptive_softmax.strip() in ("", AUTO) or not self.tied,
               "--adaptive-softmax has its own output weights: it cannot be --tied")

    @property
    def cutoffs(self) -> tuple[int, ...]:
        """The adaptive softmax's cluster boundaries, increasing; () for the full softmax (and
        for "auto" until training has chosen them). Whether they fit the vocabulary is checked
        when the model is built."""
        return cutoffs_for(self.adaptive_softmax, self.vocab_size)

    @property
    def adaptive_div_value(self) -> float:
        """The ``div_value`` torch's adaptive softmax is built with: :attr:`adaptive_div`, lowered
        where it would leave the last cluster's projection (``hidden // div ** clusters``) no
        feature at all."""
        return max(min(self.adaptive_div, self.hidden ** (1.0 / max(len(self.cutoffs), 1)) * (1 - 1e-6)), 1.0)

    def rate(self, name: str) -> float:
        """The dropout rate of ``input``, ``hidden`` or ``output``, with -1 meaning --dropout."""
        value = getattr(self, f"dropout_{name}")
        return self.dropout if value < 0 else value

    @property
    def cell_spec(self) -> CellSpec:
        """The cell's registry entry."""
        return CELLS[self.cell]

    @property
    def cell_options(self) -> dict[str, Any]:
        """The fields the cell takes (its spec's ``config_options``) and their values here."""
        return {name: getattr(self, name) for name in self.cell_spec.config_options}

    @property
    def state_count(self) -> int:
        """Tensors in the recurrent state, as the cell's registry entry says: (h, c) for an LSTM, (h,) for a GRU."""
        return self.cell_spec.state_count


def shape_keys() -> tuple[str, ...]:
    """ModelConfig fields that fix the weights' shapes, the registered cells' own options among
    them (read at each call, so a cell registered later counts); the others (dropouts, impl) may
    change between runs of one model."""
    return ("cell", "emb", "hidden", "layers", "tied", "attention", "adaptive_div", *cell_options())
