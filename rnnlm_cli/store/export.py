"""Writing a model in other formats: ONNX, safetensors, word2vec text embeddings, and its
vocabulary as a recogniser's symbol table (:mod:`rnnlm_cli.text.symbol_tables`); sherpa-onnx's
RNN LM files are :mod:`rnnlm_cli.store.sherpa_onnx`'s.

ONNX graphs take the hidden state as explicit inputs and return the new state, so a
runtime can score or generate step by step:

    inputs:  tokens (T, B) int64, <s>0 (L, B, H) for each state name s of the cell
             [, mem0 (N, B, H), valid0 (N, B) with --attention N]
    outputs: log_probs (T, B, V), <s>n (L, B, H) for each s [, memn (N, B, H), validn (N, B)]

log_probs are natural-log probabilities of the next token, whatever the output layer (a full
softmax's logits are normalised in the graph; an adaptive softmax gives them as they are), so
a scorer reads them directly. Every axis is named in the graph: time, batch, vocab, layers,
hidden, window. The model's metadata (``metadata_props``) holds what a runtime needs beside
the graph: the tokenizer (its pieces in id order), the special ids ``eos_id`` and ``unk_id``,
the model config, ``output``, which says what the first output holds, and ``direction``:
"left to right", or "right to left" for a backward model (``train --reverse``), which reads
each line's tokens last first (the tokenizer's ``"reverse": true``; the line end stays last).

The state names are the cell registry's (``CellSpec.state_names``): h0, c0 in and hn, cn
out for an LSTM or mogrifier, h0 and hn for a GRU or an Elman RNN.

mem holds the last N top-layer outputs and valid is 1.0 where a slot is filled (start
a stream with zeros for both). T and B are dynamic axes.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import torch

from rnnlm_cli.files.atomic import atomic_path, atomic_open
from rnnlm_cli.store.checkpoint import FORMAT, VERSION, checked_checkpoint, model_from_checkpoint
from rnnlm_cli.config import as_dict
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import fused_copy
from rnnlm_cli.errors import CheckpointError, UsageError

FORMATS = ("onnx", "safetensors", "embeddings", "symbols", "sherpa-onnx")
SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "embeddings": ".vec", "symbols": ".words.txt",
            "sherpa-onnx": ""}
"""What follows the model's name without its extension in the default output; sherpa-onnx's
four files (:mod:`rnnlm_cli.store.sherpa_onnx`) take that name as the start of theirs."""


def default_output(model_path: str, fmt: str) -> str:
    return os.path.splitext(model_path)[0] + SUFFIXES[fmt]


def output_paths(model_path: str, fmt: str, out: str | None) -> list[str]:
    """The files an export writes: ``out`` (default :func:`default_output`), or for sherpa-onnx
    the four files that start with it. UsageError (OutputError for the folder) for paths that
    cannot be written, or that name the model."""
    from rnnlm_cli.files.roles import FileRole, check_file_roles, check_output_file
    from rnnlm_cli.store.sherpa_onnx import check_stem, sherpa_paths

    out = out or default_output(model_path, fmt)
    if fmt == "sherpa-onnx":
        check_stem(out)
    paths = sherpa_paths(out) if fmt == "sherpa-onnx" else [out]
    for path in paths:
        check_output_file(path, "--out")
    check_file_roles([FileRole("MODEL", model_path), *(FileRole("--out", path, writes=True) for path in paths)])
    return paths


def _check_onnx_extra(fmt: str) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx writes through it)
        if fmt == "sherpa-onnx":
            import onnxruntime.quantization  # noqa: F401  (the int8 copies)
    except ImportError:
        raise UsageError(f"--format {fmt} needs the onnx extra: pip install 'rnnlm[onnx]'") from None


class _WithExplicitState(torch.nn.Module):
    """The LM with its state as separate tensors, the shape ONNX graphs need."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, *state: torch.Tensor):
        logits, new_state = self.model(tokens, tuple(state))
        # Idempotent on the adaptive softmax's output, which is already normalised.
        return (torch.log_softmax(logits, dim=-1), *new_state)


OUTPUT = "log_probs"
"""The name of the graph's first output: log-probabilities, never unnormalised logits."""
OUTPUT_MEANING = ("log_probs (time, batch, vocab): natural-log probabilities of the next token given the "
                  "tokens so far; feed eos_id first, as the start of a line")


def onnx_io_names(config: ModelConfig) -> tuple[list[str], list[str]]:
    names = config.cell_spec.state_names + (("mem", "valid") if config.attention else ())
    return ["tokens", *[f"{n}0" for n in names]], [OUTPUT, *[f"{n}n" for n in names]]


def _axes(config: ModelConfig) -> dict[str, dict[int, str]]:
    """The dynamic axes, time and batch, by name (the fixed ones are named in :func:`_name_fixed_axes`)."""
    inputs, outputs = onnx_io_names(config)
    axes = {"tokens": {0: "time", 1: "batch"}, OUTPUT: {0: "time", 1: "batch"}}
    for name in inputs[1:] + outputs[1:]:
        axes[name] = {1: "batch"}
    return axes


_FIXED_AXES = {"state": ("layers", None, "hidden"), "mem": ("window", None, "hidden"), "valid": ("window", None),
               OUTPUT: (None, None, "vocab")}


def _name_fixed_axes(graph, config: ModelConfig) -> None:
    """Name the fixed axes (layers, hidden, window, vocab) beside the dynamic ones."""
    for value in [*graph.input, *graph.output]:
        stem = value.name[:-1] if value.name[-1:] in ("0", "n") and value.name != OUTPUT else value.name
        names = _FIXED_AXES.get(stem) or (_FIXED_AXES["state"] if stem in config.cell_spec.state_names else ())
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            if name is not None and not dim.dim_param:
                # A name replaces the size in the graph's signature; the weights still fix it.
                dim.dim_param = name


def export_onnx(model: torch.nn.Module, path: str, tokenizer_dict: dict[str, Any] | None = None,
                opset: int = 17) -> None:
    """Write ``model`` as an ONNX graph with explicit state inputs and outputs, its tokenizer
    and special ids in the model's metadata."""
    import onnx

    config: ModelConfig = model.config
    model = fused_copy(model)
    # Built in eval mode: the exporter puts the module it is given back into that module's
    # own mode afterwards, and a new module starts in training mode.
    wrapper = _WithExplicitState(model).eval()
    tokens = torch.zeros(3, 2, dtype=torch.long)
    state = model.init_state(2)
    inputs, outputs = onnx_io_names(config)
    with atomic_path(path) as temp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's concern
        # The TorchScript-based exporter maps torch's fused RNN modules onto ONNX's own
        # LSTM/GRU/RNN operators, which keeps the graph small and fast in runtimes.
        torch.onnx.export(wrapper, (tokens, *state), temp, input_names=inputs, output_names=outputs,
                          dynamic_axes=_axes(config), opset_version=opset, dynamo=False)
        graph = onnx.load(temp)
        _name_fixed_axes(graph.graph, config)
        onnx.helper.set_model_props(graph, _onnx_metadata(config, tokenizer_dict))
        onnx.save(graph, temp)


def _onnx_metadata(config: ModelConfig, tokenizer_dict: dict[str, Any] | None) -> dict[str, str]:
    meta = {**_metadata(config, tokenizer_dict or {}), "output": OUTPUT_MEANING,
            "state": ",".join(config.cell_spec.state_names)}
    if tokenizer_dict:
        from rnnlm_cli.text.backward import direction
        from rnnlm_cli.text.tokenizers import tokenizer_from_dict

        tokenizer = tokenizer_from_dict(tokenizer_dict)
        meta["direction"] = direction(tokenizer)
        meta["eos_id"] = str(tokenizer.eos_id)
        meta["unk_id"] = "" if tokenizer.unk_id is None else str(tokenizer.unk_id)
        meta["vocab_size"] = str(config.vocab_size)
    return meta


def _metadata(config: ModelConfig, tokenizer_dict: dict[str, Any]) -> dict[str, str]:
    return {"format": FORMAT, "version": str(VERSION), "model_config": json.dumps(as_dict(config)),
            "tokenizer": json.dumps(tokenizer_dict)}


def export_safetensors(model: torch.nn.Module, tokenizer_dict: dict[str, Any], path: str) -> None:
    """Weights in safetensors, with the model config and tokenizer as JSON metadata."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    if model.config.tied:
        # safetensors stores no aliases; the tied decoder weight is rebuilt on load.
        tensors.pop("decoder.weight", None)
    with atomic_path(path) as temp:
        save_file(tensors, temp, metadata=_metadata(model.config, tokenizer_dict))


def load_safetensors(path: str, max_params: int = 0):
    """Rebuild ``(model, tokenizer_dict)`` from a file written by :func:`export_safetensors`.

    The file's contents pass the checkpoint's own checks (:func:`checked_checkpoint`): dense
    finite weights of the shapes the stored config needs, the parameter cap, the tokenizer."""
    from safetensors import SafetensorError, safe_open

    from rnnlm_cli.text.reading import check_readable

    check_readable(path)
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnlm safetensors export")
    if not meta.get("version", "").isdigit() or int(meta["version"]) > VERSION:
        raise CheckpointError(f"{path}: export format version {meta.get('version')!r} is newer than this "
                              f"rnnlm reads (version {VERSION}); upgrade rnnlm")
    try:
        model_config = json.loads(meta["model_config"])
        tokenizer = json.loads(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: export metadata is incomplete or damaged ({exc})") from exc
    if isinstance(model_config, dict) and model_config.get("tied") is True and "embedding.weight" in tensors:
        # Stored once (safetensors keeps no aliases); the model holds it under both names.
        tensors.setdefault("decoder.weight", tensors["embedding.weight"])
    payload = {"format": FORMAT, "version": VERSION, "model_config": model_config, "tokenizer": tokenizer,
               "state_dict": tensors}
    checkpoint = checked_checkpoint(path, payload, max_params)
    model, _ = model_from_checkpoint(path, checkpoint)
    return model, checkpoint.tokenizer


def _word2vec_token(piece: str) -> str:
    # word2vec text lines are split on whitespace, so a token holding some is escaped.
    if not piece or any(ch.isspace() for ch in piece):
        return "".join(f"<0x{ord(ch):02X}>" if ch.isspace() else ch for ch in piece) or "<empty>"
    return piece


def export_embeddings(model: torch.nn.Module, tokenizer, path: str) -> None:
    """The input embeddings in word2vec's text format: a 'V D' line, then 'token v1 .. vD'."""
    weight = model.embedding.weight.detach().cpu().float()  # (V, E)
    with atomic_open(path, "w") as handle:
        handle.write(f"{weight.shape[0]} {weight.shape[1]}\n")
        for index, row in enumerate(weight.tolist()):
            handle.write(_word2vec_token(tokenizer.piece(index)) + " " + " ".join(f"{v:.6g}" for v in row) + "\n")


def export_model(model_path: str, fmt: str, out: str | None = None, notes: list[str] | None = None) -> list[str]:
    """Export the model at ``model_path`` as ``fmt``; returns the paths written (one file, or
    sherpa-onnx's four). What the caller should hear of (words a symbol table cannot hold)
    goes into ``notes``."""
    from rnnlm_cli.store.checkpoint import load_model

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("onnx", "sherpa-onnx"):
        _check_onnx_extra(fmt)
    stem = out or default_output(model_path, fmt)
    paths = output_paths(model_path, fmt, out)
    out = paths[0]
    model, tokenizer, checkpoint = load_model(model_path, "cpu")
    if fmt == "symbols":
        from rnnlm_cli.text.symbol_tables import reserved_words, write_symbol_table

        if tokenizer.kind != "word":
            raise UsageError(f"--format symbols lists a word model's vocabulary; this model's tokenizer is {tokenizer.kind}")
        left_out = reserved_words(tokenizer)
        if left_out and notes is not None:
            notes.append(f"{out}: {len(left_out)} word(s) left out, which Kaldi reserves and a recogniser reads as "
                         f"<unk>: {' '.join(left_out[:10])}{' ...' if len(left_out) > 10 else ''}")
        write_symbol_table(tokenizer, out)
    elif fmt == "sherpa-onnx":
        from rnnlm_cli.store.sherpa_onnx import export_sherpa_onnx

        export_sherpa_onnx(model, tokenizer, stem)
    elif fmt == "onnx":
        export_onnx(model, out, checkpoint.tokenizer)
    elif fmt == "safetensors":
        export_safetensors(model, checkpoint.tokenizer, out)
    else:
        export_embeddings(model, tokenizer, out)
    return paths
