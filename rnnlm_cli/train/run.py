"""A whole training run: corpus on disk -> token files -> model -> best checkpoint.

Text corpora are encoded once into token files beside the output model
(``<stem>.train.tok``, ``<stem>.valid.tok``) and then read by memory-mapping, so
memory stays bounded however large the corpus. Without ``--valid`` the last
``valid_fraction`` of the corpus (at most ``valid_max_tokens`` tokens, starting at a line
start) is held out for validation and never trained on.

A run holds a lock on its output folder, can resume where a stopped run left off,
start from an existing model (``--init-from``), and replace a production model only
when it is better (``--promote-if-better``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig, shape_keys
from rnnlm_cli.models.output_layer import MIN_VOCAB, choose_cutoffs, cutoffs_for, is_fixed, token_counts
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.models.sizing import check_fits_in_memory, check_model_size
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.job_files import check_job_files
from rnnlm_cli.files.locks import output_lock
from rnnlm_cli.train.resume import AUTO, load_resume_point, resume_path, track_best_on
from rnnlm_cli.train.run_control import StopSignals, clean_stale_temps
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file, tokenizer_to_learn
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.loop import OutputPaths, TrainCallbacks, Trainer, TrainResult
from rnnlm_cli.train.state import data_fingerprint, environment, seed_everything, set_deterministic


@dataclass
class PreparedData:
    train: np.ndarray
    valid: np.ndarray
    tokenizer: Any
    notes: list[str]
    sources: tuple[str, str | None]
    """The train and validation token files (None: held out of the train file), for other ranks."""


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
    source = job.tokenizer
    if given is None and source is not None and not tokenizer_to_learn(source):
        given = tokenizer_from_file(source)

    if is_token_file(corpus):
        train_path = _kept(corpus, job.corpus, f"{stem}.train.tok")
        train_file = open_token_file(train_path)
        tokenizer = train_file.tokenizer
        if given is not None and fingerprint(given) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"{job.corpus}: token file was made with another tokenizer than {source or job.init_from}")
        if given is None and source is not None and source != tokenizer.kind:
            raise TokenizerMismatchError(
                f"{job.corpus}: token file holds {tokenizer.kind} tokens, not {source}; drop --tokenizer "
                "or re-create the token file")
    else:
        learn = None if given is not None else dataclasses.replace(job.tokenizer_config, kind=source or "word")
        stats = encode_corpus(corpus, f"{stem}.train.tok", tokenizer=given, config=learn, strict=job.strict,
                              name=job.corpus)
        tokenizer = stats.tokenizer
        train_path = f"{stem}.train.tok"
        notes.extend(_warnings(job.corpus, stats))
        train_file = open_token_file(f"{stem}.train.tok")

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
    else:
        valid_path = f"{stem}.valid.tok"
        notes.extend(_warnings(job.valid, encode_corpus(valid_text, valid_path, tokenizer=tokenizer, strict=job.strict,
                                                        name=job.valid)))
        train, valid = train_file.tokens, open_token_file(valid_path).tokens
    return PreparedData(train=train, valid=valid, tokenizer=tokenizer, notes=notes, sources=(train_path, valid_path))


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


def _check_fits(data: PreparedData, config: TrainConfig, world_size: int = 1) -> None:
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


def _model_config(job: TrainJob, base: ModelConfig, source: str) -> ModelConfig:
    """``base`` (a saved model's config) with the model options the user gave explicitly.

    Shape options must agree with ``base``; regularisation options may differ.
    """
    changes = {}
    for name in job.model_flags:
        wanted, saved = getattr(job.model, name), getattr(base, name)
        if name == "adaptive_softmax":
            # The output layer's weights are the saved ones: auto keeps them, others must name them.
            if not is_fixed(wanted) or cutoffs_for(wanted, base.vocab_size) == base.cutoffs:
                continue
            raise UsageError(f"--adaptive-softmax {wanted} differs from the model in {source} "
                             f"({saved or 'full softmax'}); drop it to keep the model's output layer")
        if wanted == saved:
            continue
        if name in shape_keys():
            raise UsageError(f"--{name.replace('_', '-')} {wanted} differs from the model in {source} ({saved}); "
                             "drop it to keep the model's shape")
        changes[name] = wanted
    return dataclasses.replace(base, **changes)


def _init_model(job: TrainJob, data: PreparedData, notes: list[str], resume_from=None, initial=None):
    """The model to train: shaped as the resumed run's (checkpoint), ``initial`` (--init-from's
    loaded ``(model, tokenizer, checkpoint)``), or fresh, its output layer fitted to ``data``."""
    from rnnlm_cli.models.lm import build_model

    if resume_from is not None:
        # The weights come from the saved state; only its shape and settings are needed here.
        return build_model(_model_config(job, resume_from.model_config, "the run being resumed"))
    if initial is None:
        fresh = dataclasses.replace(job.model, vocab_size=data.tokenizer.vocab_size)
        return build_model(output_layer(fresh, data.train, notes))
    model, _, checkpoint = initial
    config = _model_config(job, checkpoint.model_config, job.init_from)
    if config != checkpoint.model_config:
        model = _with_config(model, **{k: getattr(config, k) for k in job.model_flags})
    notes.append(f"starting from the weights of {job.init_from}")
    return model


def output_layer(config: ModelConfig, train_tokens, notes: list[str] | None = None) -> ModelConfig:
    """``config`` with its adaptive-softmax cutoffs written out as token counts, the form a
    checkpoint keeps: auto chosen from the training tokens' frequencies, shares of the
    vocabulary computed; a line in ``notes`` says what was chosen and why."""
    spec = config.adaptive_softmax
    if is_fixed(spec):
        cutoffs = config.cutoffs
        if notes is not None and spec.strip().endswith("%"):
            notes.append(f"output layer: adaptive softmax {','.join(map(str, cutoffs))} "
                         f"({spec} of the {config.vocab_size:,}-token vocabulary)")
    else:
        blocks = train_tokens.blocks() if hasattr(train_tokens, "blocks") else [train_tokens]
        cutoffs, why = choose_cutoffs(token_counts(blocks, config.vocab_size), config.tied)
        if notes is not None and (cutoffs or config.vocab_size >= MIN_VOCAB):  # a small vocabulary: nothing to choose
            notes.append(f"output layer: {why}")
    return dataclasses.replace(config, adaptive_softmax=",".join(map(str, cutoffs)))


def _with_config(model, **changes):
    from rnnlm_cli.models.lm import build_model

    rebuilt = build_model(dataclasses.replace(model.config, **changes))
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def _word_knowledge(config: TrainConfig, model, tokenizer, notes: list[str], fresh: bool):
    """Pretrained embeddings (on a fresh start), freezing, and the synonym pairs (or None)."""
    from rnnlm_cli.train import pretrained

    if config.embeddings:
        check_readable(config.embeddings)
        if config.freeze_embeddings:
            pretrained.freeze_embeddings(model)
        if fresh:
            notes.append(pretrained.load_embeddings(config.embeddings, tokenizer, model.embedding.weight))
    elif config.freeze_embeddings:
        raise UsageError("--freeze-embeddings needs --embeddings (there is nothing to keep fixed)")
    if not config.synonyms or config.synonym_weight == 0:
        return None
    check_readable(config.synonyms)
    pairs, note = pretrained.load_synonyms(config.synonyms, tokenizer)
    notes.append(note)
    return pairs


def run_training(job: TrainJob, callbacks: TrainCallbacks | None = None,
                 notes: list[str] | None = None) -> TrainResult:
    """Prepare the data, build the model and train it; the best model lands at ``job.out``.

    Under torchrun every rank calls this; rank 0 holds the lock, encodes the corpus,
    writes the files and promotes, the others read what it prepared.
    """
    from rnnlm_cli.train import distributed

    notes = notes if notes is not None else []
    check_job_files(job)  # before any byte is written, on every rank
    set_deterministic(job.train.deterministic)
    context, device = distributed.setup(job.train.device)  # refuses a missing GPU before any work
    folder = os.path.dirname(os.path.abspath(job.out))
    try:
        with output_lock(folder, note=notes.append) if context.is_main else contextlib.nullcontext():
            return _run_locked(job, callbacks, notes, context, device, folder)
    finally:
        distributed.teardown(context)


def _run_locked(job: TrainJob, callbacks, notes: list[str], context, device, folder: str) -> TrainResult:
    from rnnlm_cli.store.checkpoint import load_checkpoint, load_model
    from rnnlm_cli.train.distributed import from_main, shard
    from rnnlm_cli.train.promote import check_promotable

    paths = OutputPaths.beside(job.out)
    cap = job.train.max_params
    initial = load_model(job.init_from, max_params=cap) if job.init_from is not None else None  # loaded once
    given = initial[1] if initial is not None else None

    def prepare_on_main() -> tuple[str, str | None]:
        if clean_stale_temps(folder):
            notes.append(f"removed temporary files of an interrupted save in {folder}")
        prepared = prepare_data(job, given=given)
        notes.extend(prepared.notes)
        _check_fits(prepared, job.train, context.world_size)
        if job.init_from is None:
            fresh = output_layer(dataclasses.replace(job.model, vocab_size=prepared.tokenizer.vocab_size), prepared.train)
            check_model_size(fresh, job.train.max_params)
            check_fits_in_memory(fresh, job.train, device)
        if job.promote_to is not None:
            check_promotable(job.promote_to, prepared.tokenizer)
        return prepared.sources

    data = open_prepared(from_main(prepare_on_main, context), job.train)
    fingerprint = data_fingerprint(data.train)
    valid_fingerprint = data_fingerprint(data.valid)
    resume_from = resume_path(job.resume, paths)
    saved = load_checkpoint(resume_from, max_params=cap) if resume_from else None
    seed_everything(job.train.seed)
    model = _init_model(job, data, notes, saved, initial)
    if context.enabled:
        # Same weights on every rank, its own dropout masks; numpy's generator (random BPTT
        # lengths) stays the same everywhere so the ranks cut their segments alike.
        torch.manual_seed(job.train.seed + context.rank)
    resume = load_resume_point(resume_from, saved, model, fingerprint, context, job.train) if saved else None
    synonym_pairs = _word_knowledge(job.train, model, data.tokenizer, notes, fresh=resume is None)
    if resume_from:
        notes.append(f"resuming {resume_from} at epoch {resume.progress.epoch}, step {resume.progress.step}")
        track_best_on(resume, saved, valid_fingerprint, paths, data.valid, job.train, device, context, notes)
    elif job.resume == AUTO:
        notes.append(f"nothing to resume at {paths.last}: starting a new run")
    provenance = {"data_fingerprint": fingerprint, "valid_fingerprint": valid_fingerprint,
                  "environment": environment(device),
                  "corpus": os.path.abspath(job.corpus) if job.corpus != "-" else "-",
                  "init_from": job.init_from, "world_size": context.world_size}
    # The signals stay caught through the final validation and the promotion: a stop there
    # still ends as a stop (128 + signal) with the state saved and the target whole.
    with StopSignals() as stop:
        trainer = Trainer(model, shard(data.train, context), shard(data.valid, context), data.tokenizer.to_dict(),
                          job.train, device, paths, callbacks, resume=resume, stop=stop, provenance=provenance,
                          dist=context, synonym_pairs=synonym_pairs)
        result = trainer.run()
        if job.promote_to is not None and context.is_main and stop.requested is None:
            _promote(job, paths, data.valid, device, stop, notes, result)
        if stop.requested is not None:
            _stopped_after_training(stop.requested, job, paths, result)
    return result


def _promote(job: TrainJob, paths: OutputPaths, valid, device, stop, notes: list[str], result: TrainResult) -> None:
    from rnnlm_cli.train.promote import promote_if_better

    result.promoted, result.promotion = promote_if_better(
        paths.model, job.promote_to, valid, job.train, device, note=notes.append,
        should_stop=lambda: stop.requested is not None)


def _stopped_after_training(signum: int, job: TrainJob, paths: OutputPaths, result: TrainResult) -> None:
    """A signal that came during the final validation or the promotion: the run still ends as stopped."""
    import signal

    from rnnlm_cli.errors import TrainingInterrupted

    name = signal.Signals(signum).name
    if job.promote_to is None:
        what = f"the best model is {paths.model}"
    elif result.promoted is None:
        what = f"{job.promote_to} is unchanged (not promoted)"
    else:
        what = result.promotion
    raise TrainingInterrupted(f"stopped by {name} after training, state saved in {paths.last}; {what}", signum)
