"""A whole training run: corpus on disk -> token files -> model -> best checkpoint.

A run holds a lock on its output (the ``--out`` stem), encodes its data (:mod:`.data`),
fits its shape and batch to the data and device (:mod:`.fitting`), takes its weights from a
fresh model, ``--init-from`` or the run it resumes (:mod:`.start`), trains
(:mod:`.loop`), and replaces a production model only when it is better
(``--promote-if-better``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
import os
import time

import numpy as np
import torch

from rnnlm_cli.files.locks import output_lock
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.sizing import check_fits_in_memory, check_model_size
from rnnlm_cli.text.backward import RIGHT_TO_LEFT, direction
from rnnlm_cli.train.data import check_fits, open_prepared, prepare_data
from rnnlm_cli.train.fitting import fit_job
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.job_files import check_job_files
from rnnlm_cli.train.loop import OutputPaths, TrainCallbacks, Trainer, TrainResult
from rnnlm_cli.train.regularization_fit import FITTED_REGULARIZATION, fit_to_budget, unset_regularization
from rnnlm_cli.train.resume import (AUTO, check_resumed_direction, load_resume_point, resume_path, resume_refusal,
                                    saved_settings, tokenizer_options, track_best_on, why_not_resumed)
from rnnlm_cli.train.run_control import StopSignals, clean_stale_temps
from rnnlm_cli.train.speed_probe import seconds_per_step
from rnnlm_cli.train.start import check_tokenizer_options, init_model, output_layer, word_knowledge
from rnnlm_cli.train.state import data_fingerprint, environment, seed_everything, set_deterministic


def run_training(job: TrainJob, callbacks: TrainCallbacks | None = None,
                 notes: list[str] | None = None, started: float | None = None) -> TrainResult:
    """Prepare the data, build the model and train it; the best model lands at ``job.out``.

    Under torchrun every rank calls this; rank 0 holds the lock, encodes the corpus,
    writes the files and promotes, the others read what it prepared.
    """
    from rnnlm_cli.train import distributed

    started = time.monotonic() if started is None else started  # --max-wall-time's clock (time.monotonic)
    notes = notes if notes is not None else []
    check_job_files(job)  # before any byte is written, on every rank
    set_deterministic(job.train.deterministic)
    context, device = distributed.setup(job.train.device)  # refuses a missing GPU before any work
    folder = os.path.dirname(os.path.abspath(job.out))
    try:
        with output_lock(job.out, note=notes.append) if context.is_main else contextlib.nullcontext():
            return _run_locked(job, callbacks, notes, context, device, folder, started)
    finally:
        distributed.teardown(context)


def _run_locked(job: TrainJob, callbacks, notes: list[str], context, device, folder: str,
                started: float) -> TrainResult:
    from rnnlm_cli.train.distributed import from_main

    paths = OutputPaths.beside(job.out)
    start = _Start.read(job, paths, notes)
    found = _Found()
    sources = from_main(lambda: _prepare_on_main(job, start, context, device, folder, notes, found), context)
    data = dataclasses.replace(open_prepared(sources, job.train), vocabulary=found.vocabulary, counts=found.counts)
    fingerprint, valid_fingerprint = data_fingerprint(data.train), data_fingerprint(data.valid)
    not_continued = _why_started_afresh(job, start, fingerprint, context.world_size)  # every rank decides alike
    if not_continued is not None:
        notes.append(not_continued)
        start = dataclasses.replace(start, resume_from=None, saved=None)
    if start.saved is not None:
        check_resumed_direction(start.resume_from, start.saved, data.tokenizer)
    # Every rank fits alike, from the same tokens.
    job = _fitted(job, start, len(data.train), data.tokenizer, start.saved is not None, context, device)
    if start.saved is not None:
        job = saved_settings(job, start.saved)
    fresh = found.fresh
    if start.saved is None and start.initial is None and unset_regularization(job):
        # A fresh model: its regularisation (and width) nobody set is fitted to the epochs it will see.
        job = _fit_to_budget(job, data, fresh, device, context, started, notes)
        if fresh is not None:
            fresh = _fresh_config(job, data, fresh)
    seed_everything(job.train.seed)
    model = init_model(job, data, notes, start.saved, start.initial, fresh=fresh)
    if context.enabled:
        # Same weights on every rank, its own dropout masks; numpy's generator (random BPTT
        # lengths) stays the same everywhere so the ranks cut their segments alike.
        torch.manual_seed(job.train.seed + context.rank)
    resume = (load_resume_point(start.resume_from, start.saved, model, fingerprint, context, job.train)
              if start.saved else None)
    synonym_pairs = word_knowledge(job.train, model, data.tokenizer, notes, fresh=resume is None)
    _say_where_it_starts(job, start, resume, valid_fingerprint, data, paths, device, context, notes)
    provenance = {"data_fingerprint": fingerprint, "valid_fingerprint": valid_fingerprint,
                  "environment": environment(device),
                  "corpus": os.path.abspath(job.corpus) if job.corpus != "-" else "-",
                  "init_from": job.init_from, "world_size": context.world_size,
                  "tokenizer_options": tokenizer_options(job)}
    return _train_and_promote(job, model, data, paths, callbacks, resume, synonym_pairs, context, device, started,
                              notes, provenance)


@dataclass(frozen=True)
class _Start:
    """Where a run's weights come from: an ``--init-from`` model, a ``.last.pt`` to resume."""

    initial: tuple | None
    """``load_model``'s answer for ``--init-from`` (loaded once), or None."""
    resume_from: str | None
    saved: dict | None
    """The state file's payload, or None when nothing is resumed."""

    @classmethod
    def read(cls, job: TrainJob, paths: OutputPaths, notes: list[str]) -> "_Start":
        from rnnlm_cli.store.checkpoint import load_checkpoint, load_model

        cap = job.train.max_params
        initial = load_model(job.init_from, max_params=cap) if job.init_from is not None else None
        if initial is not None:
            check_tokenizer_options(job, initial[1], notes)
        resume_from = resume_path(job.resume, paths)
        saved = load_checkpoint(resume_from, max_params=cap) if resume_from else None
        return cls(initial, resume_from, saved)

    @property
    def tokenizer(self):
        """The ``--init-from`` model's tokenizer, which the run keeps; None otherwise."""
        return self.initial[1] if self.initial is not None else None


def _fitted(job: TrainJob, start: _Start, train_tokens: int, tokenizer, resuming: bool, context, device,
            notes: list[str] | None = None) -> TrainJob:
    """The job with what nobody set fitted to this rank's share of the corpus and the device; a
    model that exists already (``--init-from``, resumed) keeps its shape, a resumed one its batch."""
    return fit_job(job, train_tokens // context.world_size, tokenizer.kind, device.type,
                   fixed_shape=start.initial is not None or resuming, fixed_batch=resuming, notes=notes)


@dataclass
class _Found:
    """What rank 0 learns while it prepares the data (other ranks keep the defaults)."""

    fresh: ModelConfig | None = None
    """The fresh model's config with its output layer chosen; None for a model that exists."""
    vocabulary: dict = dataclasses.field(default_factory=dict)
    """The texts' words against the vocabulary (:attr:`PreparedData.vocabulary`), and whether
    promotion compares across vocabularies."""
    counts: np.ndarray | None = None
    """The training tokens' id counts, if they were read (:meth:`PreparedData.token_counts`)."""


def _prepare_on_main(job: TrainJob, start: _Start, context, device, folder: str, notes: list[str],
                     found: _Found) -> tuple[str, str | None]:
    """Rank 0's part: the token files made, the shape fitted and the fresh model's size checked,
    the promotion target checked, what it learned put in ``found``; the token files' paths."""
    from rnnlm_cli.train.promote import check_promotable

    if clean_stale_temps(folder):
        notes.append(f"removed temporary files of an interrupted save in {folder}")
    prepared = prepare_data(job, given=start.tokenizer)
    notes.extend(prepared.notes)
    found.vocabulary.update(prepared.vocabulary)
    resuming = (start.saved is not None
                and _why_started_afresh(job, start, data_fingerprint(prepared.train), context.world_size) is None)
    run = _fitted(job, start, len(prepared.train), prepared.tokenizer, resuming, context, device, notes)
    check_fits(prepared, run.train, context.world_size)
    if job.init_from is None and not resuming:
        # Counted once here; other ranks count their own copy in init_model.
        fresh = output_layer(dataclasses.replace(run.model, vocab_size=prepared.tokenizer.vocab_size),
                             prepared, notes)
        check_model_size(fresh, run.train.max_params)
        check_fits_in_memory(fresh, run.train, device)
        found.fresh = fresh
    if job.promote_to is not None and check_promotable(job.promote_to, prepared.tokenizer):
        found.vocabulary["promotion_across_vocabularies"] = True
    found.counts = prepared.counts
    return prepared.sources


def _why_started_afresh(job: TrainJob, start: _Start, fingerprint: str, world_size: int) -> str | None:
    """Under ``--resume auto``, the line saying why the state found is not continued (None: it
    is, or it was named, and its refusals stay errors that say how to start afresh): beside
    ``--init-from`` a finished run or one on other data (a corpus that grew overnight), or a
    state today's options cannot continue, so a night never fails for an old reason."""
    if start.saved is None or job.resume != AUTO:
        return None
    why_not = why_not_resumed(job, start.saved, lambda: fingerprint)
    if why_not is not None:
        return (f"starting from {job.init_from}: {start.resume_from} {why_not} (--resume auto with "
                "--init-from resumes only an unfinished run on the same data)")
    refusal = resume_refusal(job, start.resume_from, start.saved, fingerprint, world_size)
    if refusal is None:
        return None
    origin = f"from {job.init_from}" if job.init_from else "from scratch"
    return (f"starting a new run {origin}: {start.resume_from} cannot be resumed with today's options "
            f"({refusal}); --resume auto replaces it")


def _say_where_it_starts(job: TrainJob, start: _Start, resume, valid_fingerprint: str, data, paths: OutputPaths,
                         device, context, notes: list[str]) -> None:
    """The note on what is resumed (and the best model tracked on this validation text), or on
    ``--resume auto`` finding nothing."""
    if start.resume_from:
        unused = (f" (an unfinished run on the same data; --init-from {job.init_from} is not used)"
                  if start.initial else "")
        notes.append(f"resuming {start.resume_from} at epoch {resume.progress.epoch}, "
                     f"step {resume.progress.step}{unused}")
        track_best_on(resume, start.saved, valid_fingerprint, paths, data.valid, job.train, device, context, notes)
    elif job.resume == AUTO and not os.path.exists(paths.last):
        notes.append(f"nothing to resume at {paths.last}: starting a new run")


def _train_and_promote(job: TrainJob, model, data, paths: OutputPaths, callbacks, resume, synonym_pairs, context,
                       device, started: float, notes: list[str], provenance: dict) -> TrainResult:
    """The training loop, then the promotion; a stop signal ends either as a stop."""
    from rnnlm_cli.train.distributed import shard
    from rnnlm_cli.train.vocabulary import oov_note

    # Said as training starts: a run refused before it says only why.
    found = oov_note(data.vocabulary, data.tokenizer.vocab_size) if context.is_main else None
    if found is not None:
        notes.append(found)
    if context.is_main and data.tokenizer.reverse:
        notes.append(f"a backward model: each line is read {RIGHT_TO_LEFT}, its last token first "
                     "(eval, n-best rescoring and generate read it so too)")
    # The signals stay caught through the final validation and the promotion: a stop there
    # still ends as a stop (128 + signal) with the state saved and the target whole.
    with StopSignals() as stop:
        wall_deadline = started + job.train.max_wall_time if job.train.max_wall_time else None
        trainer = Trainer(model, shard(data.train, context), shard(data.valid, context), data.tokenizer.to_dict(),
                          job.train, device, paths, callbacks, resume=resume, stop=stop, provenance=provenance,
                          dist=context, synonym_pairs=synonym_pairs, wall_deadline=wall_deadline,
                          validations_after=_validations_after(job, data),
                          unk_stand_in=_unk_stand_in(data, notes if context.is_main else []))
        result = trainer.run()
        result.vocabulary = data.vocabulary or None
        result.direction = direction(data.tokenizer)
        if job.promote_to is not None and context.is_main and stop.requested is None:
            _promote(job, paths, data.valid, device, stop, notes, result)
        if stop.requested is not None:
            _stopped_after_training(stop.requested, job, paths, result)
    return result


def _validations_after(job: TrainJob, data) -> int:
    """What --max-wall-time keeps after training, in validations: the final one, and promotion's
    scoring; across vocabularies that scores both models' whole distributions as well
    (:data:`~rnnlm_cli.train.promote.ACROSS_VOCABULARIES`). Rank 0 knows which promotion it
    will be, and the ranks agree on the largest reserve."""
    from rnnlm_cli.train.promote import ACROSS_VOCABULARIES

    if job.promote_to is None:
        return 1
    return 2 + (ACROSS_VOCABULARIES if data.vocabulary.get("promotion_across_vocabularies") else 0)


def _unk_stand_in(data, notes: list[str]):
    """Rare words standing in for ``<unk>`` when the training tokens hardly hold it (the counts
    of the whole corpus, so every rank draws from the same words)."""
    from rnnlm_cli.train.unk_stand_in import KINDS, UnkStandIn

    if data.tokenizer.kind not in KINDS:
        return None  # nothing to count for
    stand_in = UnkStandIn.for_tokens(data.token_counts(), data.tokenizer)
    if stand_in is not None:
        notes.append(stand_in.note())
    return stand_in


def _fit_to_budget(job: TrainJob, data, fresh: ModelConfig | None, device, context, started: float,
                   notes: list[str]) -> TrainJob:
    """``job`` with its unset regularisation fitted to the epochs it plans, or to those its
    time buys at the step speed timed here (the slowest rank's, so every rank fits alike)."""
    from rnnlm_cli.train.distributed import max_all

    train = job.train
    limits = [train.max_time or None,
              train.max_wall_time - (time.monotonic() - started) if train.max_wall_time else None]
    seconds = min((limit for limit in limits if limit is not None), default=None)

    def time_a_step(candidate: TrainJob) -> float:
        config = _fresh_config(candidate, data, fresh)
        return max_all([seconds_per_step(config, train, data.train, device)], context, device)[0]

    fitted = fit_to_budget(job, len(data.train) // context.world_size, seconds, time_a_step,
                           notes if context.is_main else [], may_widen=device.type == "cpu")
    if fitted.model.hidden != job.model.hidden:
        config = _fresh_config(fitted, data, fresh)
        check_model_size(config, train.max_params)
        check_fits_in_memory(config, train, device)
    return fitted


def _fresh_config(job: TrainJob, data, fresh: ModelConfig | None) -> ModelConfig:
    """The config of ``job``'s fresh model with its output layer chosen: ``fresh`` (rank 0's,
    chosen once) reshaped as ``job`` says, or chosen here."""
    if fresh is not None:
        return dataclasses.replace(fresh, hidden=job.model.hidden,
                                   **{name: getattr(job.model, name) for name in FITTED_REGULARIZATION})
    return output_layer(dataclasses.replace(job.model, vocab_size=data.tokenizer.vocab_size), data)


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
