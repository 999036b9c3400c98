"""Export for sherpa-onnx's RNN LM: the two graphs icefall's ``rnn_lm/export-onnx.py`` writes,
and a dynamically quantised (int8 weights) copy of each.

``STEM.no-state.onnx``, for n-best rescoring (sherpa-onnx ``csrc/offline-lm.cc``,
``OfflineLM::ComputeLMScore``, and ``offline-rnn-lm.cc``)::

    inputs:  x (N, L) int64, the hypotheses' token ids, padded with 0 (L may be 0); x_lens (N,) int64
    outputs: nll (N,) float32, -ln P(x[:x_lens] then the end of the sentence)

sherpa-onnx feeds them by position and leaves the sentence start and end to the graph,
as icefall's ``RnnLmModelWrapper`` does: the start symbol is read first, and the end symbol is
scored after the last token. That is rnnlm's own sentence score (``eval --context sentence``,
n-best rescoring): a fresh zero state reads ``<eos>``, then each token, and the line's end is
scored.

``STEM.with-state.onnx``, for shallow fusion (``csrc/online-rnn-lm.cc``)::

    inputs:  x (N, L) int64, L >= 1; h0 (layers, N, hidden) float32, c0 (layers, N, hidden) float32
    outputs: log_softmax (N, V) float32, next_h0, next_c0 (as h0, c0)

sherpa-onnx starts every hypothesis by feeding ``x = [[sos_id]]`` with zero h0 and c0, then
feeds each token it emits as ``x`` of shape (1, 1), adding ``log_softmax[0, token]`` of the
previous call to the hypothesis. For L = 1, as sherpa-onnx calls it, the graph computes what
icefall's ``score_token_onnx`` does; for a longer x, log_softmax is the distribution after x's
last token (the one the returned state continues from), where icefall's gives it after the
first. A GRU or Elman RNN has no cell state: its c0 passes through unchanged to next_c0, which
is sound because sherpa-onnx only carries c from one call to the next.

Metadata, which sherpa-onnx reads (``num_layers``, ``hidden_size``, ``sos_id``) beside what
icefall writes: ``model_type`` rnnlm, ``version`` 1, ``sos_id``, ``eos_id``, ``vocab_size``,
``num_layers``, ``hidden_size``, ``embedding_dim``, and rnnlm's ``model_config`` and ``cell``.

**Ids are the recogniser's.** The model must have been built from the ASR model's token table
(``rnnlm tokenize --symbols tokens.txt``): both graphs take and give that table's ids, mapped
to the model's own order inside the graph (a gather on x, a gather on the log-probabilities'
columns), and V is the table's id space (its largest id + 1). The table's ``<sos/eos>`` (else
a Kaldi table's ``<s>`` and ``</s>``) is rnnlm's ``<eos>``: sos_id and eos_id are its ids. An
id the model has no entry for (``<blank>``, ``<eps>``, ``#0``, an unused id) has probability
zero (``-inf``); read as input it is ``<unk>`` (sherpa-onnx pads x with 0, typically the
blank, after x_lens).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnlm_cli.config import as_dict
from rnnlm_cli.errors import UsageError
from rnnlm_cli.files.atomic import atomic_path
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import fused_copy
from rnnlm_cli.text.symbol_tables import ESPNET_EOS

FILES = ("no-state.onnx", "no-state.int8.onnx", "with-state.onnx", "with-state.int8.onnx")
"""What ``STEM.`` is followed by in the four files written, in the order they are returned."""
OPSET = 13
"""icefall's: old enough for the onnxruntime of every sherpa-onnx build."""
FORMAT = "sherpa-onnx"


def sherpa_paths(stem: str) -> list[str]:
    """The four files an export to ``stem`` writes, in :data:`FILES` order."""
    return [f"{stem}.{name}" for name in FILES]


@dataclass(frozen=True)
class TokenMap:
    """The recogniser's token ids against the model's."""

    inputs: tuple[int, ...]
    """Table id -> the model id the network reads for it (``<unk>`` where the model has none)."""
    columns: tuple[int, ...]
    """Table id -> the model id whose log-probability it gets, or -1: none (probability zero)."""
    sos_id: int
    """Table id of the sentence start, read first."""
    eos_id: int
    """Table id of the sentence end, scored last."""

    @property
    def vocab_size(self) -> int:
        return len(self.columns)


def token_map(tokenizer) -> TokenMap:
    """The map of a word tokenizer built from a recogniser's table; UsageError for any other."""
    if tokenizer.reverse:
        # sherpa-onnx feeds a hypothesis' tokens in reading order: a backward model would score them backwards.
        raise UsageError(f"--format {FORMAT}: the model reads each line right to left (trained with --reverse); "
                         "sherpa-onnx feeds tokens left to right, so export a forward model")
    table = getattr(tokenizer, "symbols", None)
    if table is None:
        raise UsageError(f"--format {FORMAT}: the model's ids must be the recogniser's; build its vocabulary from "
                         "the ASR model's tokens.txt with 'rnnlm tokenize --symbols tokens.txt' and train on that")
    entries = {symbol: symbol_id for symbol, symbol_id in table["entries"]}
    end = ESPNET_EOS if ESPNET_EOS in entries else "</s>"
    if end not in entries:
        raise UsageError(f"--format {FORMAT}: the model's symbol table has no sentence boundary symbol "
                         f"({ESPNET_EOS}, or Kaldi's <s> and </s>) for sherpa-onnx's sos_id and eos_id")
    start = "<s>" if end == "</s>" and "<s>" in entries else end
    model_ids = {piece: index for index, piece in enumerate(tokenizer.pieces)}
    # The boundary symbols are rnnlm's end of line, even where a Kaldi-layout tokens.txt made
    # <sos/eos> a word of the vocabulary: that word never ends a line of the training text.
    model_ids.update({start: tokenizer.eos_id, end: tokenizer.eos_id})
    size = max(entries.values()) + 1
    inputs, columns = [tokenizer.unk_id] * size, [-1] * size
    for symbol, symbol_id in entries.items():
        if symbol in model_ids:
            inputs[symbol_id] = model_ids[symbol]
            columns[symbol_id] = model_ids[symbol] if symbol != start or start == end else -1
    return TokenMap(tuple(inputs), tuple(columns), entries[start], entries[end])


def check_exportable(config: ModelConfig) -> None:
    """UsageError for a model whose state sherpa-onnx cannot carry."""
    if config.attention:
        raise UsageError(f"--format {FORMAT}: a model with --attention keeps a memory of its last outputs, and "
                         "sherpa-onnx carries only h0 and c0; export one trained without --attention")
    names = config.cell_spec.state_names
    if len(names) > 2:
        raise UsageError(f"--format {FORMAT}: the {config.cell} cell keeps {len(names)} state tensors "
                         f"({', '.join(names)}); sherpa-onnx carries two, h0 and c0")


class _InTableIds(nn.Module):
    """The model read and scored in the recogniser's ids; both graphs hold one."""

    def __init__(self, model: nn.Module, tokens: TokenMap) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inputs", torch.tensor(tokens.inputs, dtype=torch.long))  # (V,)
        unmapped = model.config.vocab_size  # a column of -inf appended after the model's
        self.register_buffer("columns", torch.tensor([c if c >= 0 else unmapped for c in tokens.columns]))  # (V,)

    def log_probs(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (N, L) table ids -> log-probabilities (L, N, V) over table ids, the new state."""
        tokens = self.inputs[x].t()  # (L, N) model ids
        scores, state = self.model(tokens, state)  # (L, N, V_model)
        # Idempotent on the adaptive softmax's output, which is already normalised.
        scores = torch.log_softmax(scores.float(), dim=-1)
        never = torch.full_like(scores[..., :1], float("-inf"))  # (L, N, 1)
        return torch.cat([scores, never], dim=-1).index_select(-1, self.columns), state


class _Sentences(nn.Module):
    """(x, x_lens) -> nll, the sentence start and end added inside."""

    def __init__(self, model: nn.Module, tokens: TokenMap) -> None:
        super().__init__()
        self.lm, self.config = _InTableIds(model, tokens), model.config
        self.sos_id, self.eos_id = tokens.sos_id, tokens.eos_id

    def forward(self, x: Tensor, x_lens: Tensor) -> Tensor:
        # Shapes from x_lens, not x: x may have no column at all (every hypothesis empty).
        column = torch.zeros_like(x_lens)[:, None]  # (N, 1)
        inputs = torch.cat([column + self.sos_id, x], dim=1)  # (N, L + 1)
        positions = torch.arange(inputs.shape[1], device=x.device)[None, :]  # (1, L + 1)
        targets = torch.cat([x, column], dim=1)  # (N, L + 1)
        targets = torch.where(positions == x_lens[:, None], torch.full_like(targets, self.eos_id), targets)
        zeros = torch.zeros_like(x_lens, dtype=torch.float32)[None, :, None]  # (1, N, 1)
        shape = (self.config.layers, x_lens.shape[0], self.config.hidden)
        state = tuple(zeros.expand(shape) for _ in range(self.config.state_count))
        scores, _ = self.lm.log_probs(inputs, state)  # (L + 1, N, V)
        picked = scores.gather(2, targets.t()[:, :, None])[:, :, 0].t()  # (N, L + 1)
        # where, not a product: a padded position's score may be -inf, and -inf * 0 is nan.
        return -torch.where(positions <= x_lens[:, None], picked, torch.zeros_like(picked)).sum(dim=1)


class _Steps(nn.Module):
    """(x, h0, c0) -> (log_softmax after x's last token, next_h0, next_c0)."""

    def __init__(self, model: nn.Module, tokens: TokenMap) -> None:
        super().__init__()
        self.lm, self.keeps_c = _InTableIds(model, tokens), model.config.state_count == 2

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keeps_c = self.keeps_c
        scores, state = self.lm.log_probs(x, (h0, c0) if keeps_c else (h0,))  # (L, N, V)
        return scores[-1], state[0], state[1] if keeps_c else c0


def _graphs(model: nn.Module, tokens: TokenMap) -> list[tuple[nn.Module, tuple, list[str], list[str], dict, str]]:
    """(module, example inputs, input names, output names, dynamic axes, comment) of each graph."""
    config: ModelConfig = model.config
    x = torch.zeros(2, 3, dtype=torch.long)
    state = torch.zeros(config.layers, 2, config.hidden)
    no_state = (_Sentences(model, tokens).eval(), (x, torch.tensor([3, 1])), ["x", "x_lens"], ["nll"],
                {"x": {0: "N", 1: "L"}, "x_lens": {0: "N"}, "nll": {0: "N"}}, "rnnlm without state")
    with_state = (_Steps(model, tokens).eval(), (x, state, state), ["x", "h0", "c0"],
                  ["log_softmax", "next_h0", "next_c0"],
                  {"x": {0: "N", 1: "L"}, "h0": {1: "N"}, "c0": {1: "N"}, "log_softmax": {0: "N"},
                   "next_h0": {1: "N"}, "next_c0": {1: "N"}},
                  "rnnlm with state" + ("" if config.state_count == 2 else "; c0 passes through unchanged"))
    return [no_state, with_state]


def metadata(config: ModelConfig, tokens: TokenMap, comment: str) -> dict[str, str]:
    """What sherpa-onnx and icefall's checks read, and what rnnlm knows of the model."""
    return {"model_type": "rnnlm", "version": "1", "model_author": "rnnlm", "comment": comment,
            "sos_id": str(tokens.sos_id), "eos_id": str(tokens.eos_id), "vocab_size": str(tokens.vocab_size),
            "num_layers": str(config.layers), "hidden_size": str(config.hidden), "embedding_dim": str(config.emb),
            "cell": config.cell, "model_config": json.dumps(as_dict(config))}


def export_sherpa_onnx(model: nn.Module, tokenizer, stem: str) -> list[str]:
    """Write the four files of :data:`FILES` beside ``stem``; returns their paths.

    All four appear together or none does: each is written to a temporary file, and the
    temporary files replace their destinations only once every one is complete."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    check_exportable(model.config)
    tokens = token_map(tokenizer)
    copy = fused_copy(model)
    paths = sherpa_paths(stem)
    with contextlib.ExitStack() as stack, warnings.catch_warnings(), _quiet_logging():
        warnings.simplefilter("ignore")  # the exporter's notes are not the user's concern
        temps = [stack.enter_context(atomic_path(path)) for path in paths]
        for (module, args, inputs, outputs, axes, comment), plain, int8 in zip(_graphs(copy, tokens), temps[::2],
                                                                               temps[1::2]):
            torch.onnx.export(module, args, plain, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
            graph = onnx.load(plain)
            onnx.helper.set_model_props(graph, metadata(copy.config, tokens, comment))
            onnx.save(graph, plain)
            # The quantiser keeps the float model's metadata.
            quantize_dynamic(plain, int8, weight_type=QuantType.QInt8)
    return paths


@contextlib.contextmanager
def _quiet_logging():
    """onnxruntime's quantiser gives its advice (pre-processing, tensors it leaves as they are)
    through the root logger at WARNING, to the user's stderr."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


def check_stem(stem: str) -> None:
    """UsageError for an ``--out`` that names a folder rather than the files' common start."""
    if stem.endswith(("/", os.sep)) or os.path.isdir(stem):
        raise UsageError(f"--out {stem}: names a folder; give the start of the files' names, such as "
                         f"{os.path.join(stem, 'lm')} (for {os.path.join(stem, 'lm')}.{FILES[0]} ...)")
