"""A whole training run: corpus on disk -> token files -> model -> best checkpoint.

Text corpora are encoded once into token files beside the output model
(``<stem>.train.tok``, ``<stem>.valid.tok``) and then read by memory-mapping, so
memory stays bounded however large the corpus. Without ``--valid`` the last
``valid_fraction`` of the corpus (at most ``valid_max_tokens`` tokens, starting at a line
start) is held out for validation and never trained on.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnlm_cli.config import ModelConfig, TokenizerConfig, TrainConfig
from rnnlm_cli.device import resolve_device
from rnnlm_cli.errors import TokenizerMismatchError
from rnnlm_cli.sources import tokenizer_from_file, tokenizer_to_learn
from rnnlm_cli.textio import check_readable
from rnnlm_cli.trainer import OutputPaths, TrainCallbacks, TrainResult, fit


@dataclass(frozen=True)
class TrainJob:
    """Everything a run needs; the model's vocabulary size comes from the tokenizer."""

    corpus: str
    out: str
    model: ModelConfig
    train: TrainConfig
    tokenizer: str | None = None
    """A kind to learn (word, char, byte, sentencepiece) or a tokenizer/model/token file;
    None: the token file's own tokenizer, or a word tokenizer learned from text."""
    tokenizer_config: TokenizerConfig = TokenizerConfig()
    valid: str | None = None
    strict: bool = False


@dataclass
class PreparedData:
    train: np.ndarray
    valid: np.ndarray
    tokenizer: Any
    notes: list[str]


def prepare_data(job: TrainJob) -> PreparedData:
    """Encode (or open) the training and validation tokens and settle the tokenizer."""
    from rnnlm_cli.batching import holdout_split
    from rnnlm_cli.corpus import encode_corpus
    from rnnlm_cli.tokenfile import is_token_file, open_token_file
    from rnnlm_cli.tokenizers import fingerprint

    check_readable(job.corpus)
    if job.valid is not None:
        check_readable(job.valid)
    stem, _ = os.path.splitext(job.out)
    notes: list[str] = []
    source = job.tokenizer
    given = None if source is None or tokenizer_to_learn(source) else tokenizer_from_file(source)

    if is_token_file(job.corpus):
        train_file = open_token_file(job.corpus)
        tokenizer = train_file.tokenizer
        if given is not None and fingerprint(given) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"{job.corpus}: token file was made with another tokenizer than {source}")
        if given is None and source is not None and source != tokenizer.kind:
            raise TokenizerMismatchError(
                f"{job.corpus}: token file holds {tokenizer.kind} tokens, not {source}; drop --tokenizer "
                "or re-create the token file")
    else:
        learn = None if given is not None else dataclasses.replace(job.tokenizer_config, kind=source or "word")
        stats = encode_corpus(job.corpus, f"{stem}.train.tok", tokenizer=given, config=learn, strict=job.strict)
        tokenizer = stats.tokenizer
        if stats.invalid_lines:
            notes.append(f"{job.corpus}: {stats.invalid_lines} line(s) with invalid UTF-8, "
                         f"{stats.replaced_chars} character(s) replaced (use --strict to refuse)")
        train_file = open_token_file(f"{stem}.train.tok")

    if job.valid is None:
        train, valid = holdout_split(train_file.tokens, tokenizer.eos_id,
                                     job.train.valid_fraction, job.train.valid_max_tokens)
        notes.append(f"no --valid given: holding out the last {len(valid)} tokens of the corpus for validation")
    elif is_token_file(job.valid):
        valid_file = open_token_file(job.valid)
        if fingerprint(valid_file.tokenizer) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"{job.valid}: token file was made with another tokenizer than the corpus")
        train, valid = train_file.tokens, valid_file.tokens
    else:
        encode_corpus(job.valid, f"{stem}.valid.tok", tokenizer=tokenizer, strict=job.strict)
        train, valid = train_file.tokens, open_token_file(f"{stem}.valid.tok").tokens
    return PreparedData(train=train, valid=valid, tokenizer=tokenizer, notes=notes)


def run_training(job: TrainJob, callbacks: TrainCallbacks | None = None,
                 notes: list[str] | None = None) -> TrainResult:
    """Prepare the data, build the model and train it; the best model lands at ``job.out``."""
    from rnnlm_cli.models import build_model

    device = resolve_device(job.train.device)  # refuse a missing GPU before any work
    data = prepare_data(job)
    if notes is not None:
        notes.extend(data.notes)
    torch.manual_seed(job.train.seed)
    model_config = dataclasses.replace(job.model, vocab_size=data.tokenizer.vocab_size)
    model = build_model(model_config)
    return fit(model, data.train, data.valid, data.tokenizer.to_dict(), job.train, device,
               OutputPaths.beside(job.out), callbacks)
