"""rnnlm export: write a model as ONNX (its own graph, or sherpa-onnx's RNN LM files), safetensors or word2vec text
embeddings, or its vocabulary as a symbol table."""

from __future__ import annotations

from typing import Optional

import typer

NAME = "export"
SUMMARY = "Export a model as ONNX, sherpa-onnx's RNN LM, safetensors or word2vec embeddings; its vocabulary as a symbol table."
HELP = (
    "Export MODEL: 'onnx' (a graph with the hidden state as explicit inputs and outputs, "
    "for onnxruntime and friends; needs the onnx extra), 'safetensors' (weights, with the "
    "model config and tokenizer as metadata), or 'embeddings' (the input embeddings in "
    "word2vec text format), or 'symbols' (a word model's vocabulary for a recogniser: the Kaldi "
    "symbol table or ESPnet token list it was built from with 'rnnlm tokenize --symbols', else a Kaldi "
    "words.txt of its words: <eps> 0, the words from 1 in the model's id order, then #0, <s>, </s>), or "
    "'sherpa-onnx' (the RNN LM files icefall's exporter writes, for sherpa-onnx's --lm: STEM.no-state.onnx for "
    "rescoring, STEM.with-state.onnx for shallow fusion, and an int8 copy of each; the model must have been "
    "built from the ASR model's tokens.txt with 'rnnlm tokenize --symbols tokens.txt', and the files take and "
    "give its ids; needs the onnx extra). Prints each path written, one a line."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm export runs/sample/model.pt --format onnx\n\n"
    "  rnnlm export model.pt --format safetensors --out weights.safetensors\n\n"
    "  rnnlm export model.pt --format embeddings --out vectors.txt\n\n"
    "  rnnlm export model.pt --format symbols --out words.txt\n\n"
    "  rnnlm export lm.pt --format sherpa-onnx --out exp/lm"
)


def command(
    model: str = typer.Argument(..., help="Model file written by 'rnnlm train'."),
    format: str = typer.Option("onnx", "--format", "-f", metavar="onnx|safetensors|embeddings|symbols|sherpa-onnx",
                               help="onnx, safetensors, embeddings, symbols (a word model's vocabulary as a "
                                    "Kaldi symbol table, or the Kaldi or ESPnet table it was built from), or "
                                    "sherpa-onnx (four files for sherpa-onnx's RNN LM)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="FILE",
                                      help="Output file; for sherpa-onnx the start of the four files' names (STEM gives "
                                           "STEM.no-state.onnx, STEM.no-state.int8.onnx, STEM.with-state.onnx, "
                                           "STEM.with-state.int8.onnx) \\[default: the model's name with .onnx, "
                                           ".safetensors, .vec or .words.txt; sherpa-onnx: without its extension]."),
) -> None:
    from rnnlm_cli.cli.ui import warn
    from rnnlm_cli.store.export import export_model

    notes: list[str] = []
    written = export_model(model, format, out, notes)  # checks the format (and the onnx extra) before reading anything
    for note in notes:
        warn(note)
    for path in written:
        print(path)
