"""The recurrent language model and its state helpers.

Layout (after pytorch/examples ``word_language_model`` and AWD-LSTM)::

    tokens (T, B) -> embedding (T, B, E), whole words dropped (dropout_emb)
        -> input dropout -> recurrent core (T, B, H), dropout between layers,
           weight drop on each layer's hidden-to-hidden matrix
        -> [attention over the last N outputs (T, B, H)]
        -> output dropout -> [proj (T, B, E) when tied and H != E] -> decoder (T, B, V)

Input, between-layer and output dropout are locked (one mask per sequence, shared over
time) when ``locked_dropout`` is set. With locked dropout or weight drop, training runs
the core one layer at a time (on the same kernels and parameters); evaluation, where all
of these are inactive, always runs the whole stack at once.

With ``tied`` the decoder weight is the embedding weight (Press & Wolf, 2017),
which needs the decoder input to have the embedding size: hence ``proj``.

The state is a tuple: the core's ``state_count`` tensors, each (L, B, H) (``(h, c)``
for an LSTM, ``(h,)`` otherwise), then, with ``attention`` N > 0, the memory of the
last N top-layer outputs (N, B, H) and its validity (N, B) (1 where a slot holds an
output, 0 before the stream has produced N of them). Every tensor has the batch on
dimension 1, so :func:`detach_state` and :func:`select_state` treat them alike.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models import regularization as reg
from rnnlm_cli.models.attention import RecentAttention
from rnnlm_cli.models.registry import build_recurrent

State = tuple[Tensor, ...]

INIT_RANGE = 0.1
"""Embedding and decoder weights start uniform in [-0.1, 0.1], as in word_language_model."""


class RNNLM(nn.Module):
    """Embedding, stacked recurrent core and softmax decoder over ``config.vocab_size`` tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.state_count = config.state_count
        self.embedding = nn.Embedding(config.vocab_size, config.emb)
        # The core's own between-layer dropout serves the plain case; the layer-by-layer
        # path below applies its own (locked) dropout instead.
        self.rnn = build_recurrent(config.cell, config.impl, config.emb, config.hidden,
                                   config.layers, config.rate("hidden"), **config.cell_options)
        self.layerwise = config.locked_dropout or config.weight_drop > 0
        self.attention = RecentAttention(config.hidden, config.attention) if config.attention else None
        needs_proj = config.tied and config.hidden != config.emb
        self.proj = nn.Linear(config.hidden, config.emb) if needs_proj else None
        features = config.emb if config.tied else config.hidden
        if config.cutoffs:
            self.decoder = build_adaptive_softmax(features, config)
        else:
            self.decoder = nn.Linear(features, config.vocab_size)
        self.reset_parameters()
        if config.tied:
            self.decoder.weight = self.embedding.weight

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        if isinstance(self.decoder, nn.Linear):
            nn.init.uniform_(self.decoder.weight, -INIT_RANGE, INIT_RANGE)
            nn.init.zeros_(self.decoder.bias)

    @property
    def feature_size(self) -> int:
        """Width D of :meth:`hidden_states` features: the decoder's input size."""
        return self.decoder.in_features

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """Zero state for ``batch_size`` streams; device and dtype default to the model's."""
        weight = self.embedding.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        shape = (self.config.layers, batch_size, self.config.hidden)
        state = tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.state_count))
        if self.attention is not None:
            state += self.attention.init_memory(batch_size, device, dtype)
        return state

    def _run_core(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (T, B, E) -> top-layer output (T, B, H) and the core's new state."""
        if not (self.training and self.layerwise):
            return self.rnn(x, state)
        config = self.config
        finals: list[State] = []
        for layer in range(config.layers):
            if layer > 0:
                x = reg.sequence_dropout(x, config.rate("hidden"), True, config.locked_dropout)
            weight_hh = reg.weight_drop(getattr(self.rnn, f"weight_hh_l{layer}"), config.weight_drop, True)
            x, layer_state = self.rnn.forward_layer(layer, x, tuple(s[layer] for s in state), weight_hh)
            finals.append(layer_state)
        return x, tuple(torch.stack([f[k] for f in finals]) for k in range(self.state_count))

    def hidden_states(self, tokens: Tensor, state: State | None = None, return_outputs: bool = False):
        """tokens (T, B) -> features (T, B, D) just before the decoder, and the new state.

        With ``return_outputs`` also returns ``(raw, dropped)``, each (T, B, H): the last
        recurrent layer's output (after attention, when on) before and after the output
        dropout, for activation regularisation (AR on ``dropped``, TAR on ``raw``).
        """
        config = self.config
        if state is None:
            state = self.init_state(tokens.shape[1])
        core_state, memory = tuple(state[: self.state_count]), tuple(state[self.state_count:])
        x = reg.embedding_dropout(self.embedding.weight, tokens, config.dropout_emb, self.training)  # (T, B, E)
        x = reg.sequence_dropout(x, config.rate("input"), self.training, config.locked_dropout)
        raw, core_state = self._run_core(x, core_state)  # (T, B, H)
        if self.attention is not None:
            raw, *memory = self.attention(raw, *memory)
        dropped = reg.sequence_dropout(raw, config.rate("output"), self.training, config.locked_dropout)
        y = dropped if self.proj is None else self.proj(dropped)  # (T, B, D)
        new_state = core_state + tuple(memory)
        if return_outputs:
            return y, new_state, (raw, dropped)
        return y, new_state

    def decode(self, features: Tensor) -> Tensor:
        """features (..., D) -> logits (..., V); callers may pass slices to bound memory.

        With the adaptive softmax the "logits" are already log-probabilities, which every
        consumer (cross-entropy, log-softmax, sampling) treats the same way: their
        log-sum-exp is 0.
        """
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            flat = features.reshape(-1, features.shape[-1]).float()
            with _full_precision(flat):
                return self.decoder.log_prob(flat).reshape(*features.shape[:-1], -1)
        return self.decoder(features)

    def target_logprobs(self, features: Tensor, targets: Tensor) -> Tensor:
        """features (..., D), targets (...) -> float32 log-probability of each target (...).

        The adaptive softmax computes only the clusters the targets fall in, never the
        (..., V) distribution; that is where its speed comes from.
        """
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            flat = features.reshape(-1, features.shape[-1])
            return adaptive_target_logprobs(self.decoder, flat, targets.reshape(-1)).reshape(targets.shape)
        logits = self.decoder(features).float()  # (..., V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return -nll.reshape(targets.shape)

    def forward(self, tokens: Tensor, state: State | None = None, return_outputs: bool = False,
                targets: Tensor | None = None):
        """tokens (T, B) -> logits (T, B, V) and the state after the last step.

        With ``targets`` (T, B), their log-probabilities (T, B) instead of the logits: the
        training loss and validation need no more. With ``return_outputs`` also the last
        layer's (raw, dropped) outputs, as :meth:`hidden_states` gives them; through
        ``forward`` they also reach callers that hold the model wrapped
        (DistributedDataParallel).
        """
        if return_outputs:
            features, state, outputs = self.hidden_states(tokens, state, return_outputs=True)
        else:
            features, state = self.hidden_states(tokens, state)
        scores = self.decode(features) if targets is None else self.target_logprobs(features, targets)
        return (scores, state, outputs) if return_outputs else (scores, state)


def _full_precision(tensor: Tensor):
    """torch's adaptive ``log_prob`` writes each cluster's scores into one float32 tensor,
    which fails when autocast makes them bf16: it runs in float32."""
    return torch.autocast(tensor.device.type, enabled=False)


def build_model(config: ModelConfig) -> RNNLM:
    return RNNLM(config)


def fused_copy(model: RNNLM) -> RNNLM:
    """A CPU copy of ``model`` in eval mode, on torch's fused recurrent modules.

    An ONNX exporter traces the model: the reference cells' Python loop over time steps would
    be unrolled for the example length and the graph would accept no other. The fused
    modules take the same state dict, so the copy computes the same function. Exporting a
    copy also leaves the caller's model where it was, in the mode it was in.
    """
    copy = build_model(dataclasses.replace(model.config, impl="fused"))
    copy.load_state_dict({name: t.detach().cpu() for name, t in model.state_dict().items()})
    return copy.eval()


def build_adaptive_softmax(features: int, config: ModelConfig) -> nn.AdaptiveLogSoftmaxWithLoss:
    """The adaptive softmax (Grave et al., 2017): frequent tokens in the head, rarer ones in
    clusters behind it, each computed only through a narrower projection. It needs ids
    ordered by frequency, as word and char vocabularies are (sentencepiece's roughly)."""
    cutoffs = config.cutoffs
    if cutoffs[-1] >= config.vocab_size:
        raise UsageError(f"--adaptive-softmax: the cutoff {cutoffs[-1]} is not below the vocabulary size "
                         f"({config.vocab_size}); use smaller cutoffs")
    return nn.AdaptiveLogSoftmaxWithLoss(features, config.vocab_size, list(cutoffs),
                                         div_value=config.adaptive_div_value)


def adaptive_target_logprobs(softmax: nn.AdaptiveLogSoftmaxWithLoss, features: Tensor, targets: Tensor) -> Tensor:
    """features (N, D), targets (N,) -> float32 log-probability of each target (N,).

    The sum torch's ``AdaptiveLogSoftmaxWithLoss.forward`` computes, written so that the
    projections may run in bf16 under autocast (the log-softmaxes stay float32): every
    target gets its head score, and a target in tail cluster i adds its score within the
    cluster, computed for the rows whose targets fall there only.
    """
    count = targets.shape[0]
    features, targets = _pad_rows(features, targets)
    shortlist = softmax.shortlist_size
    head = softmax.head(features).float()  # (N', shortlist + clusters) logits
    # A tail target's head entry is its cluster's: shortlist + i.
    cluster = torch.bucketize(targets, targets.new_tensor(softmax.cutoffs[:-1]), right=True)  # (N',) 0 = head
    head_column = torch.where(cluster == 0, targets, shortlist + cluster - 1)
    # Cross-entropy is torch's fused log-softmax at the targets: on a CPU several times
    # faster than a log-sum-exp beside a gather.
    scores = -F.cross_entropy(head, head_column, reduction="none")
    for index, tail in enumerate(softmax.tail):
        rows = (cluster == index + 1).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        offsets = targets.index_select(0, rows) - softmax.cutoffs[index]
        inside, offsets = _pad_rows(features.index_select(0, rows), offsets)
        inside_scores = -F.cross_entropy(tail(inside).float(), offsets, reduction="none")  # (rows',)
        scores = scores.index_add(0, rows, inside_scores[: rows.numel()])
    return scores[:count]


def _pad_rows(rows: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """rows (N, D) and targets (N,), padded with zero rows and target 0 under CPU bf16 autocast.

    There oneDNN compiles a kernel for every new matrix shape (about 12 ms, longer than the
    product it serves), and the row counts of scoring batches and of the clusters' targets
    change at every call. Padding N up to one of eight sizes per power of two (at most 1/8
    more rows) lets the kernels be reused; callers drop the padded rows' scores.
    """
    count = rows.shape[0]
    if rows.device.type != "cpu" or not torch.is_autocast_enabled("cpu") or count == 0:
        return rows, targets
    step = max(1 << max(count.bit_length() - 4, 0), 16)
    size = -(-count // step) * step
    if size == count:
        return rows, targets
    return (torch.cat([rows, rows.new_zeros(size - count, rows.shape[1])]),
            torch.cat([targets, targets.new_zeros(size - count)]))


def detach_state(state: State) -> State:
    """Cut the graph between truncated-BPTT segments while keeping the values."""
    return tuple(s.detach() for s in state)


def select_state(state: State, index: Tensor | slice) -> State:
    """Keep or reorder batch streams (dimension 1 of every state tensor): ``index`` a
    LongTensor of stream ids or a slice."""
    if isinstance(index, slice):
        return tuple(s[:, index] for s in state)
    return tuple(s.index_select(1, index.to(s.device)) for s in state)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable values; a tied weight counts once."""
    return sum(p.numel() for p in model.parameters())
