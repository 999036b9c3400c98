"""How far back a trained model's gradient reaches: the vanishing-gradient picture, measured.

For sampled positions t of a text, the loss at t is ``-log p(x[t+1] | x[..t])`` and the
quantity is the L2 norm of its gradient with respect to the recurrent state after step
t - k, for k = 1..K (Bengio et al., 1994; Pascanu et al., 2013, section 2)::

    warm-up tokens (no gradient)   | t-K ... t-k ... t-1  t | target x[t+1]
    state settles to a typical one | one step at a time, every state kept in the graph

One backward pass from the loss at t gives the gradient at every distance at once. The
state is every tensor the cell carries, per layer: h, and c for an LSTM (the constant error
carousel of Hochreiter & Schmidhuber runs through c). With attention over past outputs,
the paths through the attention memory are part of the gradient too.

For a linear RNN ``h[s] = W h[s-1] + U x[s]`` the gradient at distance k is
``(W^T)^k`` times the gradient at t: the norm falls or grows geometrically with the
spectral radius of W. Gates let an LSTM or GRU keep it from vanishing.

Positions are windows of the text drawn by reservoir sampling as the text streams past,
so memory holds ``positions`` windows whatever the text's length.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch import Tensor

from rnnlm_cli.analysis.gradient_config import REACH_FALL, GradientConfig
from rnnlm_cli.errors import DataError
from rnnlm_cli.text.backward import line_segments
from rnnlm_cli.text.reading import display_name, iter_segments

@dataclass
class NormProfile:
    """Gradient norms against distance: median and quartiles over positions, for k = 1..K."""

    median: list[float] = field(default_factory=list)
    q1: list[float] = field(default_factory=list)
    q3: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, norms: Tensor) -> "NormProfile":
        """norms (K, N): row k-1 holds the N positions' norms at distance k."""
        quartiles = torch.quantile(norms.double(), norms.new_tensor([0.25, 0.5, 0.75]).double(), dim=1)
        q1, median, q3 = (row.tolist() for row in quartiles)
        return cls(median=median, q1=q1, q3=q3)

    def reach(self, fall: float = REACH_FALL) -> int | None:
        """The first distance whose median is ``fall`` times below distance 1's; None if none within K."""
        if not self.median or not self.median[0] > 0:
            return None
        limit = self.median[0] / fall
        for k, value in enumerate(self.median, start=1):
            if value <= limit:
                return k
        return None

    def to_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "reach": self.reach()}


@dataclass
class GradientProfile:
    """The measurement for one model: per layer, and for the whole state (all layers together)."""

    layers: list[NormProfile]
    whole: NormProfile
    positions: int
    max_distance: int

    @property
    def reach(self) -> int | None:
        """Gradient reach of the whole state: the figure to compare models by."""
        return self.whole.reach()

    def to_dict(self) -> dict:
        return {"positions": self.positions, "max_distance": self.max_distance, "fall": REACH_FALL,
                "reach": self.reach, "whole": self.whole.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers]}


def text_windows(tokenizer, path: str, config: GradientConfig) -> tuple[list[list[int]], int]:
    """Up to ``config.positions`` windows of ``config.window`` token ids, sampled uniformly
    from the consecutive windows of ``path`` as it streams; also the number of windows seen."""
    rng = random.Random(config.seed)
    size = config.window
    chosen: list[list[int]] = []
    seen = 0
    for window in _consecutive(_token_stream(tokenizer, path), size):
        seen += 1
        if len(chosen) < config.positions:
            chosen.append(window)
        else:  # reservoir sampling (Vitter's algorithm R): every window kept with equal chance
            slot = rng.randrange(seen)
            if slot < config.positions:
                chosen[slot] = window
    if not chosen:
        raise DataError(f"{display_name(path)}: too short for --max-distance {config.max_distance} with "
                        f"--warmup {config.warmup}: a window needs {size} tokens")
    return chosen, seen


def _token_stream(tokenizer, path: str) -> Iterator[int]:
    for text, ends_line in line_segments(tokenizer, iter_segments(path)):
        yield from tokenizer.encode(text)
        if ends_line:
            yield tokenizer.eos_id


def _consecutive(tokens: Iterable[int], size: int) -> Iterator[list[int]]:
    window: list[int] = []
    for token in tokens:
        window.append(token)
        if len(window) == size:
            yield window
            window = []


def window_norms(model, windows: Tensor, config: GradientConfig) -> Tensor:
    """windows (W, B) token ids -> norms (L + 1, K, B): per layer, then the whole state, the
    norm of d loss_t / d state[t - k] for k = 1..K, one column per window."""
    warmup, distance = config.warmup, config.max_distance
    count = model.state_count
    with torch.no_grad():
        _, state = model.hidden_states(windows[:warmup]) if warmup else (None, None)
    if state is None:
        state = model.init_state(windows.shape[1])
    # The graph starts here: the parameters take no gradient, so without this the states
    # after t-K would not be part of one.
    state = tuple(s.detach().requires_grad_(s.is_floating_point()) for s in state)
    kept: list[tuple[Tensor, ...]] = []  # the core's state after steps t-K..t-1
    for step in range(warmup, warmup + distance + 1):
        features, state = _step(model, windows[step:step + 1], state)
        kept.append(tuple(state[:count]))
    kept.pop()  # the state after t itself is distance 0
    targets = windows[warmup + distance + 1]
    loss = -model.target_logprobs(features[-1], targets).sum()  # windows are independent: per-window gradients
    grads = torch.autograd.grad(loss, [tensor for states in kept for tensor in states], allow_unused=True)
    squares = []  # (K, L, B): squared norm per distance, layer and window
    for k in range(distance):
        parts = grads[k * count:(k + 1) * count]
        reference = kept[k][0]
        total = reference.new_zeros(reference.shape[0], reference.shape[1], dtype=torch.float64)
        for grad in parts:
            if grad is not None:
                total += grad.double().pow(2).sum(dim=-1)  # (L, B)
        squares.append(total)
    squares_t = torch.stack(squares[::-1])  # kept runs t-K..t-1: reverse so row 0 is distance 1
    layers = squares_t.sqrt().permute(1, 0, 2)  # (L, K, B)
    whole = squares_t.sum(dim=1).sqrt().unsqueeze(0)  # (1, K, B)
    return torch.cat([layers, whole]).float()


def _step(model, tokens: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
    """tokens (1, B) -> features (1, B, D) and the new state, in evaluation mode.

    Without attention this is :meth:`RNNLM.hidden_states`. With it, the core returns its
    output and its top-layer h as two tensors of equal value, and the memory would keep the
    output: the new h is made the one tensor both the state and the memory hold, so that
    the gradient with respect to the state includes the paths through the memory.
    """
    if model.attention is None:
        return model.hidden_states(tokens, state)
    count = model.state_count
    core, memory = state[:count], state[count:]
    output, core = model.rnn(model.embedding(tokens), core)  # (1, B, H), each (L, B, H)
    h = torch.cat([core[0][:-1], output])  # (L, B, H): the top layer's h is its output
    attended, *memory = model.attention(h[-1:], *memory)
    features = attended if model.proj is None else model.proj(attended)
    return features, (h, *core[1:], *memory)


def gradient_profile(model, tokenizer, path: str, device: torch.device, config: GradientConfig,
                     progress=None) -> GradientProfile:
    """Measure ``model`` on the text at ``path``: see the module's docstring.

    ``progress(done, total)`` is called after each batch of windows. The model runs in
    evaluation mode (no dropout) and float32; its parameters get no gradient.
    """
    windows, _ = text_windows(tokenizer, path, config)
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    columns = []
    try:
        with _plain_kernels(device):
            for start in range(0, len(windows), config.batch):
                chunk = torch.tensor(windows[start:start + config.batch], device=device).t()  # (W, B)
                columns.append(window_norms(model, chunk, config).cpu())
                if progress is not None:
                    progress(min(start + config.batch, len(windows)), len(windows))
    finally:
        for parameter, flag in zip(model.parameters(), requires):
            parameter.requires_grad_(flag)
        model.train(was_training)
    norms = torch.cat(columns, dim=2)  # (L + 1, K, N)
    return GradientProfile(layers=[NormProfile.of(layer) for layer in norms[:-1]],
                           whole=NormProfile.of(norms[-1]), positions=norms.shape[2],
                           max_distance=config.max_distance)


def _plain_kernels(device: torch.device):
    # cuDNN's RNN backward runs only in training mode, where dropout would be on: the
    # native kernels give the same gradients in evaluation mode.
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def table_distances(max_distance: int) -> list[int]:
    """Distances a printed table shows: 1, 2, 5, 10, 20, 50, ... up to K, and K itself."""
    shown, scale = [], 1
    while scale <= max_distance:
        shown.extend(d for d in (scale, 2 * scale, 5 * scale) if d <= max_distance)
        scale *= 10
    if shown[-1] != max_distance:
        shown.append(max_distance)
    return shown


def format_reach(reach: int | None, max_distance: int) -> str:
    return f"> {max_distance}" if reach is None else str(reach)


def fall_exponent() -> int:
    return round(math.log10(REACH_FALL))
