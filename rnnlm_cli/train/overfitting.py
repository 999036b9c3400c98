"""Telling a run that it memorises its corpus: training improving while validation does not.

At each validation the loop hands over two losses: the mean training loss since the last
validation (dropout on, as trained) and the validation loss. A model that still learns
lowers both; a model that memorises its corpus keeps lowering the first while the second
stalls or rises, so their gap grows. :class:`OverfitWatch` says so once, at the first
validation where

* the training loss fell since the previous validation,
* the validation loss did not improve on the best before it, or by less than a tenth of
  what the training loss fell, and
* the gap (validation minus training loss) grew at each of the last :data:`GROWING`
  validations,

with the figures and the options that act against it. The gap itself is not compared with
zero: with dropout on, the training loss of a well-regularised model can sit above the
validation loss, and it is the growth that shows memorising.

The watch's state (the last validations' losses and whether it has spoken) is saved with
the run's position, so a resumed run neither forgets the trend nor says it twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rnnlm_cli.stored_checks import DamagedState, check_int, check_mapping, check_number, check_sequence
from rnnlm_cli.units import perplexity

GROWING = 2
"""Validations in a row at which the gap must have grown: one could be noise."""
KEPT = GROWING + 1
"""Validations whose losses the watch keeps: enough to see :data:`GROWING` growths."""
STALLED = 1e-3
"""A validation loss less than this far (nats) below the best before it has not improved..."""
STALLED_SHARE = 0.1
"""...nor one that improved by less than this share of what the training loss fell meanwhile:
a model that gains 0.2 nats on its corpus and 0.004 on new text is learning the corpus."""


def levers(model, train) -> str:
    """What acts against memorising, with the values in force: ``model`` a ModelConfig,
    ``train`` a TrainConfig."""
    dropouts = f"--dropout (now {model.dropout:g})"
    if model.weight_drop == 0:
        dropouts += " or --weight-drop 0.2"
    if model.dropout_emb == 0:
        dropouts += " or --dropout-emb 0.1"
    stop = ("--patience N stops a run after N validations without a new best" if train.patience == 0
            else f"--patience {train.patience} stops it after {train.patience} validations without a new best")
    return (f"raise {dropouts}, use a narrower model (--hidden {model.hidden} now) or more text, "
            f"or train less; {stop}. The best model is kept either way.")


@dataclass
class OverfitWatch:
    """The losses of the last validations and what the watch saw; saved in
    ``progress.overfit_watch``."""

    history: list[tuple[float, float]] = field(default_factory=list)
    """(training loss, validation loss) of the last :data:`KEPT` validations, oldest first."""
    best_valid_loss: float = math.inf
    """The lowest validation loss the watch has seen."""
    seen: dict[str, Any] | None = None
    """Once overfitting was seen: where, the figures, and the line that said so (see :meth:`observe`)."""

    def observe(self, step: int, epoch: int, train_loss: float, valid_loss: float,
                levers: str = "") -> dict[str, Any] | None:
        """Record a validation; the first time it shows overfitting, a record of it: ``step``,
        ``epoch``, ``train_ppl``, ``valid_ppl``, ``best_valid_ppl`` (before this validation),
        ``ratio_before`` and ``ratio`` (validation over training perplexity, :data:`GROWING`
        validations ago and now) and ``message``, which ends with ``levers``."""
        if not (math.isfinite(train_loss) and math.isfinite(valid_loss)):
            return None
        best_before = self.best_valid_loss
        self.best_valid_loss = min(best_before, valid_loss)
        self.history = [*self.history, (train_loss, valid_loss)][-KEPT:]
        if self.seen is not None or len(self.history) < KEPT:
            return None
        gaps = [valid - train for train, valid in self.history]
        growing = all(later > earlier for earlier, later in zip(gaps, gaps[1:]))
        trained = self.history[-2][0] - self.history[-1][0]
        training_falls = trained > 0
        stalled = best_before - valid_loss < max(STALLED, STALLED_SHARE * trained)
        if not (growing and training_falls and stalled):
            return None
        seen = {"step": step, "epoch": epoch, "train_ppl": perplexity(train_loss), "valid_ppl": perplexity(valid_loss),
                "best_valid_ppl": perplexity(best_before), "ratio_before": math.exp(gaps[0]), "ratio": math.exp(gaps[-1])}
        seen["message"] = (
            f"overfitting from step {step:,} (epoch {epoch}): training ppl {seen['train_ppl']:.1f} keeps falling "
            f"while validation ppl stalls at {seen['valid_ppl']:.1f} (best before {seen['best_valid_ppl']:.1f}); "
            f"validation/training ppl grew from {seen['ratio_before']:.2f}x to {seen['ratio']:.2f}x over the last "
            f"{GROWING} validations. The model memorises its corpus" + (f": {levers}" if levers else "."))
        self.seen = seen
        return seen

    def to_dict(self) -> dict[str, Any]:
        return {"history": [list(point) for point in self.history], "best_valid_loss": self.best_valid_loss,
                "seen": self.seen}

    @classmethod
    def from_dict(cls, data: Any, name: str = "progress.overfit_watch") -> "OverfitWatch":
        """The saved watch, every field checked (DamagedState, exit 65, for any other)."""
        check_mapping(name, data, tuple(cls.__dataclass_fields__))
        points = data["history"]
        if not isinstance(points, (list, tuple)) or len(points) > KEPT:
            raise DamagedState(f"{name}.history", f"is not a list of at most {KEPT} validations")
        history = []
        for index, point in enumerate(points):
            train, valid = check_sequence(f"{name}.history.{index}", point, 2)
            history.append((check_number(f"{name}.history.{index}.0", train),
                            check_number(f"{name}.history.{index}.1", valid)))
        best = check_number(f"{name}.best_valid_loss", data["best_valid_loss"], infinite=True)
        return cls(history=history, best_valid_loss=best, seen=_checked_seen(f"{name}.seen", data["seen"]))


_SEEN_NUMBERS = ("train_ppl", "valid_ppl", "best_valid_ppl", "ratio_before", "ratio")


def _checked_seen(name: str, seen: Any) -> dict[str, Any] | None:
    if seen is None:
        return None
    check_mapping(name, seen, ("step", "epoch", *_SEEN_NUMBERS, "message"))
    check_int(f"{name}.step", seen["step"])
    check_int(f"{name}.epoch", seen["epoch"], 1)
    for key in _SEEN_NUMBERS:
        check_number(f"{name}.{key}", seen[key], infinite=True)
    if not isinstance(seen["message"], str) or len(seen["message"]) > 2000:
        raise DamagedState(f"{name}.message", "is not a line of text")
    return dict(seen)
