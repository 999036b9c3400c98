"""A run's tokens: the corpus and validation text encoded into token files, or token files opened.

Text corpora are encoded once into token files beside the output model
(``<stem>.train.tok``, ``<stem>.valid.tok``) and then read by memory-mapping, so
memory stays bounded however large the corpus. Without ``--valid`` the last
``valid_fraction`` of the corpus (at most ``valid_max_tokens`` tokens, starting at a line
start) is held out for validation and never trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file, tokenizer_to_learn
from rnnlm_cli.text.backward import directed
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.vocabulary import GROWABLE_KINDS, VocabularyGrowth, oov_figures


@dataclass
class PreparedData:
    """The tokens a run trains and validates on, and the tokenizer that made them."""

    train: np.ndarray
    valid: np.ndarray
    tokenizer: Any
    notes: list[str]
    sources: tuple[str, str | None]
    """The train and validation token files (None: held out of the train file), for other ranks."""
    vocabulary: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the texts' words are to the vocabulary: ``train``/``valid`` OOV figures (of text
    encoded now; a token file's from its header) and ``growth`` with ``--grow-vocab``."""
    counts: np.ndarray | None = None
    """Each id's count in the training tokens, once :meth:`token_counts` has read them."""

    def token_counts(self) -> np.ndarray:
        """Each id's count in the training tokens, read once (the output layer's choice and
        the ``<unk>`` stand-ins both need them)."""
        from rnnlm_cli.models.output_layer import stream_token_counts

        if self.counts is None:
            self.counts = stream_token_counts(self.train, self.tokenizer.vocab_size)
        return self.counts


def open_prepared(sources: tuple[str, str | None], config: TrainConfig) -> PreparedData:
    """Open token files another process prepared (under torchrun, rank 0 encodes)."""
    from rnnlm_cli.text.batching import holdout_split
    from rnnlm_cli.text.tokenfile import open_token_file

    train_file = open_token_file(sources[0])
    tokenizer = train_file.tokenizer
    if sources[1] is None:
        train, valid = holdout_split(train_file.tokens, tokenizer.eos_id, config.valid_fraction, config.valid_max_tokens)
    else:
        train, valid = train_file.tokens, open_token_file(sources[1]).tokens
    return PreparedData(train=train, valid=valid, tokenizer=tokenizer, notes=[], sources=sources)


def prepare_data(job: TrainJob, given=None) -> PreparedData:
    """Encode (or open) the training and validation tokens and settle the tokenizer.

    A corpus or validation text that can be read only once (a pipe, ``-``, ``<(...)``) is
    copied once beside the output first: telling a token file from text reads its head.
    """
    from rnnlm_cli.files.spool import spooled

    check_readable(job.corpus)
    if job.valid is not None:
        check_readable(job.valid)
    folder = os.path.dirname(os.path.abspath(job.out))
    with contextlib.ExitStack() as stack:
        corpus = stack.enter_context(spooled(job.corpus, folder))
        valid = stack.enter_context(spooled(job.valid, folder)) if job.valid is not None else None
        return _prepare(job, corpus, valid, given)


def _prepare(job: TrainJob, corpus: str, valid_text: str | None, given) -> PreparedData:
    from rnnlm_cli.text.batching import holdout_split
    from rnnlm_cli.text.corpus import encode_corpus
    from rnnlm_cli.text.tokenfile import is_token_file, open_token_file
    from rnnlm_cli.text.tokenizers import fingerprint

    stem, _ = os.path.splitext(job.out)
    notes: list[str] = []
    vocabulary: dict[str, Any] = {}
    train_file, train_path = _train_file(job, corpus, given, stem, notes, vocabulary)
    tokenizer = train_file.tokenizer
    if valid_text is None:
        train, valid = holdout_split(train_file.tokens, tokenizer.eos_id,
                                     job.train.valid_fraction, job.train.valid_max_tokens)
        notes.append(f"no --valid given: holding out the last {len(valid)} tokens of the corpus for validation")
        valid_path = None
    elif is_token_file(valid_text):
        valid_path = _kept(valid_text, job.valid, f"{stem}.valid.tok")
        valid_file = open_token_file(valid_path)
        if fingerprint(valid_file.tokenizer) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"{job.valid}: token file was made with another tokenizer than the corpus")
        train, valid = train_file.tokens, valid_file.tokens
        vocabulary["valid"] = _header_figures(valid_file)
    else:
        valid_path = f"{stem}.valid.tok"
        valid_stats = encode_corpus(valid_text, valid_path, tokenizer=tokenizer, strict=job.strict, name=job.valid)
        notes.extend(_warnings(job.valid, valid_stats))
        vocabulary["valid"] = oov_figures(valid_stats.words, valid_stats.oov_tokens, valid_stats.oov_types)
        train, valid = train_file.tokens, open_token_file(valid_path).tokens
    vocabulary = {name: figures for name, figures in vocabulary.items() if figures is not None}
    for name in ("train", "valid"):
        if name in vocabulary:
            vocabulary[name]["text"] = _text_name(job, name)
    return PreparedData(train=train, valid=valid, tokenizer=tokenizer, notes=notes, sources=(train_path, valid_path),
                        vocabulary=vocabulary)


def _train_file(job: TrainJob, corpus: str, given, stem: str, notes: list[str], vocabulary: dict[str, Any]):
    """The opened training token file and its path: the corpus's own (a token file), or the
    corpus encoded with ``given``, with a tokenizer learned from it, or with the one
    ``--grow-vocab`` picks. What it found goes into ``notes`` and ``vocabulary``."""
    from rnnlm_cli.text.corpus import encode_corpus
    from rnnlm_cli.text.tokenfile import is_token_file, open_token_file
    from rnnlm_cli.text.tokenizers import fingerprint

    source = job.tokenizer
    reverse = job.tokenizer_config.reverse
    if given is None and source is not None and not tokenizer_to_learn(source):
        given = directed(tokenizer_from_file(source), reverse)
    if is_token_file(corpus):
        if given is not None and job.tokenizer_config.grow_vocab is not None:
            raise UsageError(f"--grow-vocab: {job.corpus} is a token file, whose words are already ids of its "
                             "vocabulary; give the corpus as text to learn its vocabulary")
        train_path = _kept(corpus, job.corpus, f"{stem}.train.tok")
        train_file = open_token_file(train_path)
        tokenizer = train_file.tokenizer
        vocabulary["train"] = _header_figures(train_file)
        if reverse and not tokenizer.reverse:
            raise UsageError(f"--reverse: {job.corpus} is a token file of lines read left to right; give the "
                             "corpus as text, or a token file from 'rnnlm tokenize --reverse'")
        if given is not None and fingerprint(given) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"{job.corpus}: token file was made with another tokenizer than {source or job.init_from}")
        if given is None and source is not None and source != tokenizer.kind:
            raise TokenizerMismatchError(
                f"{job.corpus}: token file holds {tokenizer.kind} tokens, not {source}; drop --tokenizer "
                "or re-create the token file")
        return train_file, train_path
    growth = _growth(job, given)
    learn = None if given is not None and growth is None else dataclasses.replace(
        job.tokenizer_config, kind=given.kind if given is not None else source or "word",
        reverse=given.reverse if given is not None else reverse)
    stats = encode_corpus(corpus, f"{stem}.train.tok", tokenizer=None if learn else given, config=learn,
                          strict=job.strict, name=job.corpus, choose=growth)
    notes.extend(_warnings(job.corpus, stats))
    if growth is not None:
        notes.append(growth.note)
        vocabulary["growth"] = {"grown": growth.grown, **growth.figures}
    vocabulary["train"] = oov_figures(stats.words, stats.oov_tokens, stats.oov_types)
    return open_token_file(f"{stem}.train.tok"), f"{stem}.train.tok"


def _growth(job: TrainJob, given) -> VocabularyGrowth | None:
    """The ``--grow-vocab`` choice for a corpus encoded against ``given`` (the ``--init-from``
    model's tokenizer), or None: nothing given, no ``--grow-vocab``, or a tokenizer that is not
    to grow (refused when asked of one that cannot)."""
    grow_at = job.tokenizer_config.grow_vocab
    if given is None or grow_at is None:
        return None
    if given.kind not in GROWABLE_KINDS:
        raise UsageError(f"--grow-vocab: the {given.kind} tokenizer of {job.init_from or job.tokenizer} reads every "
                         "text (it has no out-of-vocabulary words); drop --grow-vocab")
    if getattr(given, "symbols", None) is not None:
        raise UsageError(f"--grow-vocab: the vocabulary of {job.init_from or job.tokenizer} is a recogniser's "
                         "symbol table, which must stay as it is; drop --grow-vocab")
    return VocabularyGrowth(given, grow_at, job.init_from or job.tokenizer or "the given tokenizer",
                            keeps_rows=job.init_from is not None)


def _header_figures(token_file) -> dict[str, Any] | None:
    """The OOV figures a token file's header holds (made by ``rnnlm tokenize``), if any."""
    header = getattr(token_file, "metadata", None) or {}
    words, oov = header.get("words"), header.get("oov_tokens")
    if type(words) is not int or type(oov) is not int:
        return None
    return oov_figures(words, oov)


def _text_name(job: TrainJob, role: str) -> str:
    from rnnlm_cli.text.reading import display_name

    return display_name(job.corpus if role == "train" else job.valid)


def _kept(readable: str, given: str, run_copy: str) -> str:
    """A token file to train from: the one given, or, when it came through a pipe, its copy
    moved to where an encoded text would be (it must outlive the copy's block)."""
    if readable == given:
        return given
    os.replace(readable, run_copy)
    return run_copy


def _warnings(path: str, stats) -> list[str]:
    from rnnlm_cli.text.corpus import input_warnings
    from rnnlm_cli.text.reading import display_name

    return ["warning: " + line for line in input_warnings(
        display_name(path), invalid_lines=stats.invalid_lines, replaced_chars=stats.replaced_chars,
        control_chars=stats.control_chars, literal_specials=stats.literal_specials)]


def check_fits(data: PreparedData, config: TrainConfig, world_size: int = 1) -> None:
    """Refuse batching the corpus cannot fill; under torchrun each rank has 1/world of it."""
    tokens = len(data.train) // world_size
    where = "the corpus'" if world_size == 1 else f"each of {world_size} processes' share of"
    per_stream = (tokens - 1) // config.batch_size
    if per_stream < 1:
        raise UsageError(f"--batch-size {config.batch_size} is more streams than {where} "
                         f"{tokens} training tokens allow")
    if config.bptt > per_stream:
        raise UsageError(f"--bptt {config.bptt} is longer than each of the {config.batch_size} streams "
                         f"({per_stream} tokens); lower --bptt or --batch-size")
    if len(data.valid) // world_size < 3:
        raise UsageError(f"{where.replace(' share of', '')} validation text is too short to score; give a longer --valid")
