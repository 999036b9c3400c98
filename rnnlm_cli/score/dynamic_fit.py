"""Dynamic evaluation's step size, fitted to the model on a slice of text.

The right learning rate differs by several times between two models of one recipe, and a
wrong one makes scoring much worse, so nobody should have to search it by hand. Given a
slice of text (by default the first :data:`FIT_TOKENS` tokens of the text being scored):

1. the gradient RMS of every adapted weight tensor is measured on the slice's segments with
   the trained weights (the RMS rule's statistics, :func:`gradient_rms`);
2. the slice is scored plainly, then adaptively at a few learning rates, a factor of
   :data:`STEP` apart, upwards while each is better than the last and downwards from one
   that is worse than plain scoring, then once on each side of the best at half the factor;
3. the best rate is kept, unless none beats plain scoring: then adaptation is off. A rate
   under which the model diverges (:func:`rnnlm_cli.score.dynamic.diverged`), or whose
   running loss goes far above plain scoring's, is stopped and counted as diverged, which
   sends the search lower.

The fit is causal when the slice is the start of the text being scored: those tokens keep
their plain scores, and adaptation goes on from the weights the best rate left after the
slice, which saw nothing but the slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from rnnlm_cli.score.dynamic import (DynamicEvaluation, adapted_parameters, features_fixed, gradients_on,
                                     score_and_adapt, segment_features)
from rnnlm_cli.units import perplexity

FIT_TOKENS = 4096
"""Tokens of the slice a learning rate is fitted on."""
FIRST_RATE = {"rms": 2e-3, "sgd": 0.4}
"""Where the search starts, per rule."""
STEP = 4.0
"""Factor between the rates tried first."""
MAX_TRIALS = 8
"""Rates tried at most, the refinement included."""
DIVERGED = math.log(2.0)
"""A trial whose running loss exceeds plain scoring's by this many nats (twice the perplexity)
is stopped: that rate diverges."""


@dataclass(frozen=True)
class DynamicFit:
    """What the search found, for the report and ``--json``."""

    rule: str
    lr: float | None
    """The fitted rate; None when no rate beat plain scoring (adaptation off)."""
    decay: float
    weights: str
    tokens: int
    """Tokens of the slice it was fitted on."""
    plain_ppl: float
    fitted_ppl: float
    tried: tuple[tuple[float, float | None], ...]
    """(rate, slice perplexity) of every rate tried, in order; None for one that diverged."""

    @property
    def diverged(self) -> int:
        return sum(ppl is None for _, ppl in self.tried)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "weights": self.weights, "lr": self.lr, "decay": self.decay,
                "fit_tokens": self.tokens, "fit_plain_ppl": self.plain_ppl, "fit_ppl": self.fitted_ppl,
                "tried": [{"lr": lr, "ppl": ppl} for lr, ppl in self.tried]}

    def line(self, source: str) -> str:
        tried = f"{len(self.tried)} rates tried" + (f", {self.diverged} diverged" if self.diverged else "")
        if self.lr is None:
            return (f"dynamic evaluation: no rate beat plain scoring on {source} ({self.tokens:,} tokens, "
                    f"ppl {self.plain_ppl:.2f}; {tried}): scored without adapting")
        return (f"dynamic evaluation: {self.rule} steps on the {self.weights} weights at lr {self.lr:.3g}, decay "
                f"{self.decay:g}, fitted on {source} ({self.tokens:,} tokens: ppl {self.plain_ppl:.2f} plain, "
                f"{self.fitted_ppl:.2f} adapted; {tried})")


Chunk = tuple[Tensor, Tensor, bool]
"""(inputs (T, 1), targets (T,), fresh) of one chunk of a stream, as the scorer scored it;
``fresh``: it starts from a fresh state (a line's start in the sentence context), else from
where the one before ended."""


class Slice:
    """The chunks a rate is fitted on, the state before the first, and (when only the decoder
    adapts) their features, computed once for every trial."""

    def __init__(self, model: nn.Module, chunks: Sequence[Chunk], state) -> None:
        self.model, self.chunks, self.state = model, list(chunks), state
        self._features: list[Tensor] | None = None

    @property
    def tokens(self) -> int:
        return sum(chunk[1].numel() for chunk in self.chunks)

    def start(self, chunk: Chunk, state):
        return self.model.init_state(1, device=chunk[0].device) if chunk[2] else state

    @torch.no_grad()
    def features(self) -> list[Tensor]:
        """Each chunk's features (T, D) under the trained weights."""
        if self._features is None:
            self._features, state = [], self.state
            for chunk in self.chunks:
                out, state = self.model.hidden_states(chunk[0], self.start(chunk, state))
                self._features.append(out[:, 0])
        return self._features


def gradient_rms(piece: Slice, params: Sequence[Tensor], segment: int | None) -> list[float]:
    """Root mean square of each parameter tensor's gradient, over its weights and over the
    slice's segments (each a segment's mean loss), the trained weights fixed: the RMS
    rule's statistics."""
    model, fixed = piece.model, features_fixed(piece.model, params)
    sums, count, state = [0.0] * len(params), 0, piece.state
    with gradients_on(params[0].device.type if params else "cpu"):
        for index, chunk in enumerate(piece.chunks):
            x, y, _ = chunk
            state = piece.start(chunk, state)
            features = piece.features()[index] if fixed else None
            size = segment or y.numel()
            for start in range(0, y.numel(), size):
                part, state = segment_features(model, x, slice(start, start + size), state, features)
                loss = -model.target_logprobs(part, y[start:start + size]).mean()
                for i, grad in enumerate(torch.autograd.grad(loss, params, allow_unused=True)):
                    if grad is not None:
                        sums[i] += float(grad.double().pow(2).mean())
                count += 1
    return [math.sqrt(total / max(count, 1)) for total in sums]


@torch.no_grad()
def plain_nll(piece: Slice) -> float:
    """Mean negative log-likelihood of the slice's targets, no adaptation."""
    total = 0.0
    for chunk, features in zip(piece.chunks, piece.features()):
        total -= float(piece.model.target_logprobs(features, chunk[1]).double().sum())
    return total / max(piece.tokens, 1)


def adapted_nll(piece: Slice, dynamic: DynamicEvaluation, give_up: float = math.inf) -> float:
    """Mean negative log-likelihood of the slice scored with ``dynamic`` adapting after each
    segment; ``inf`` as soon as the weights diverge or the running mean passes ``give_up``."""
    total, count, state = 0.0, 0, piece.state
    for index, chunk in enumerate(piece.chunks):
        x, y, _ = chunk
        features = piece.features()[index] if dynamic.features_fixed else None
        logprobs, _, state = score_and_adapt(piece.model, dynamic, x, y, piece.start(chunk, state), features)
        total -= float(logprobs.double().sum())
        count += y.numel()
        if dynamic.back_offs or not math.isfinite(total) or total / count > give_up:
            return math.inf
    return total / max(count, 1)


def fit_dynamic(piece: Slice, *, rule: str = "rms", decay: float = 0.0, weights: str = "output",
                segment: int | None = None) -> tuple[DynamicFit, DynamicEvaluation | None]:
    """Fit the learning rate on ``piece``, a stream's slice.

    Returns the fit and the evaluation to go on with, its weights those the best rate left
    after the slice; None when adaptation does not pay. The model's weights are the trained
    ones again when no rate is kept."""
    model = piece.model
    rms = gradient_rms(piece, adapted_parameters(model, weights), segment) if rule == "rms" else None
    plain = plain_nll(piece)
    results: dict[float, float] = {}
    best: list = [plain, None, None]  # loss, rate, weights after the slice

    def loss_at(lr: float) -> float:
        if lr not in results:
            dynamic = DynamicEvaluation(model, lr, decay, rms, weights, segment)
            results[lr] = adapted_nll(piece, dynamic, give_up=plain + DIVERGED)
            if results[lr] < best[0]:
                best[:] = [results[lr], lr, dynamic.copy_weights()]
            dynamic.restore()
        return results[lr]

    _search(loss_at, FIRST_RATE[rule], plain)
    tried = tuple((lr, perplexity(loss) if math.isfinite(loss) else None) for lr, loss in results.items())
    loss, lr, adapted = best
    fit = DynamicFit(rule=rule, lr=lr, decay=decay, weights=weights, tokens=piece.tokens,
                     plain_ppl=perplexity(plain), fitted_ppl=perplexity(loss), tried=tried)
    if lr is None:
        return fit, None
    dynamic = DynamicEvaluation(model, lr, decay, rms, weights, segment)
    dynamic.load_weights(adapted)
    return fit, dynamic


def _search(loss_at: Callable[[float], float], first: float, plain: float) -> None:
    """Walk the rates a factor of STEP apart from ``first`` while each beats the last (up when
    ``first`` beats plain scoring, else down until one does), then probe half a step on each
    side of the best."""
    rate, loss = first, loss_at(first)
    upwards = loss < plain
    factor = STEP if upwards else 1.0 / STEP
    for _ in range(MAX_TRIALS - 3):
        following = loss_at(rate * factor)
        # Downwards, rates that lose to plain scoring (or diverge) are passed over until one wins.
        if not (following < loss or (not upwards and not loss < plain)):
            break
        rate, loss = rate * factor, following
    half = math.sqrt(STEP)
    for candidate in (rate * half, rate / half):
        loss_at(candidate)


class StreamFit:
    """Dynamic evaluation that fits its rate on the first ``fit_tokens`` tokens of the
    stream it scores: the scorer scores those plainly and hands each chunk to
    :meth:`collect`; :meth:`finish` fits and returns the evaluation to go on with. With a
    ``rate`` given, only the RMS rule's statistics come from those tokens, and adaptation
    starts from the trained weights after them."""

    def __init__(self, rule: str = "rms", decay: float = 0.0, weights: str = "output", segment: int | None = None,
                 fit_tokens: int = FIT_TOKENS, rate: float | None = None) -> None:
        self.rule, self.decay, self.weights, self.segment = rule, decay, weights, segment
        self.fit_tokens, self.rate = fit_tokens, rate
        self.chunks: list[Chunk] = []
        self.tokens = 0
        self.start_state = None
        self.fit: DynamicFit | None = None
        self.evaluation: DynamicEvaluation | None = None

    def collect(self, x: Tensor, y: Tensor, state_before, fresh: bool) -> bool:
        """Keep a plainly scored chunk (``fresh``: scored from a fresh state); True once the
        slice is long enough to fit on."""
        if self.start_state is None:
            self.start_state = state_before
        self.chunks.append((x, y, fresh))
        self.tokens += y.numel()
        return self.tokens >= self.fit_tokens

    def finish(self, model: nn.Module) -> DynamicEvaluation | None:
        """Fit on the slice collected (once); the evaluation, or None when adapting does not pay."""
        piece = Slice(model, self.chunks, self.start_state)
        if self.chunks and self.rate is not None:
            params = adapted_parameters(model, self.weights)
            rms = gradient_rms(piece, params, self.segment) if self.rule == "rms" else None
            self.evaluation = DynamicEvaluation(model, self.rate, self.decay, rms, self.weights, self.segment)
        elif self.chunks:
            self.fit, self.evaluation = fit_dynamic(piece, rule=self.rule, decay=self.decay, weights=self.weights,
                                                    segment=self.segment)
        self.chunks = []
        return self.evaluation

    def restore(self) -> None:
        if self.evaluation is not None:
            self.evaluation.restore()


@dataclass(frozen=True)
class AdaptationReport:
    """What dynamic evaluation did over one text: ``record`` for ``--json``, ``line`` for the log."""

    record: dict
    line: str


def adaptation_report(dynamic) -> AdaptationReport | None:
    """The report of a finished :class:`DynamicEvaluation` or :class:`StreamFit`; None for None."""
    if dynamic is None:
        return None
    if isinstance(dynamic, DynamicEvaluation):
        return _given_rate_report(dynamic, "")
    if dynamic.rate is not None and dynamic.evaluation is not None:
        return _given_rate_report(dynamic.evaluation, f", its gradient RMS measured on the text's first "
                                                      f"{dynamic.tokens:,} tokens (scored without adapting)")
    if dynamic.fit is None:
        return AdaptationReport(
            {"rule": dynamic.rule, "lr": None, "fit_tokens": dynamic.tokens},
            f"dynamic evaluation: the text is shorter than the {dynamic.fit_tokens:,} tokens a rate is fitted on "
            "(and, with --dynamic-rule rms, measured on): scored without adapting; give --dynamic-lr and "
            "--dynamic-rule sgd to adapt anyway")
    steps = {} if dynamic.evaluation is None else _steps(dynamic.evaluation)
    line = dynamic.fit.line("the text's first tokens, scored without adapting")
    if dynamic.evaluation is not None:
        line += f"; {dynamic.evaluation.steps:,} steps after them" + _back_offs(dynamic.evaluation)
    return AdaptationReport({**dynamic.fit.to_dict(), **steps}, line)


def _given_rate_report(evaluation: DynamicEvaluation, where: str) -> AdaptationReport:
    return AdaptationReport(
        {"rule": evaluation.rule, "lr": evaluation.lr, "decay": evaluation.decay, **_steps(evaluation)},
        f"dynamic evaluation: {evaluation.rule} steps at lr {evaluation.lr:.3g} (given), decay "
        f"{evaluation.decay:g}{where}; {evaluation.steps:,} steps" + _back_offs(evaluation))


def _steps(evaluation: DynamicEvaluation) -> dict:
    return {"steps": evaluation.steps, "back_offs": evaluation.back_offs, "final_lr": evaluation.lr}


def _back_offs(evaluation: DynamicEvaluation) -> str:
    if not evaluation.back_offs:
        return ""
    return (f"; it diverged {evaluation.back_offs} time(s): the trained weights were put back "
            f"and the rate cut to {evaluation.lr:.3g}")
