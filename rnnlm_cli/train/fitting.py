"""Fitting a run to its corpus and device: the shape and batch a bare command trains with,
and a preset's batch and epochs where the corpus is smaller or larger than it was tuned on.

Only options nobody set are chosen: a flag or a ``--config`` value is the user's and stays as
given (a batch the corpus cannot fill is then refused, not changed), and a preset's value is
changed only to make the preset fit, with a line that says so. Everything here depends on the
training tokens, the tokenizer and the device alone, so every process of a torchrun job fits
the same way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rnnlm_cli.train.job import TrainJob

SHAPE_OPTIONS = ("emb", "hidden", "layers")
"""The model options a run chooses for its corpus and device when they are not given."""
FITTED_OPTIONS = (*SHAPE_OPTIONS, "batch_size", "lr")
"""Every option a run may choose for its corpus and device when nobody set it."""
SEGMENTS_PER_STREAM = 50
"""Fewest BPTT segments each batch stream should hold in an epoch. Fewer, and an epoch is a
handful of steps, each stream a short text whose carried state hardly matters."""
LARGE_CORPUS = 1_000_000
"""Training tokens from which a word model on a GPU gets the wider shape and batch."""
CPU_WIDE_EMBEDDINGS = 500_000
"""Training tokens from which a word model on a CPU gets 256-wide embeddings and Adam at 0.008:
on a 500k-token cut of a 10k-vocabulary corpus they give test ppl 113.3 after 3 epochs where
128 and 0.004 give 120.5, for 14% fewer tokens a second; on the 350k-token sample, 13.95
against 14.04, not worth the time."""
HUGE_CORPUS = 100_000_000
"""Training tokens from which a GPU model gets the widest shape."""
CLOCK_EPOCHS = 1000
"""The epochs of a run that only --max-time bounds: more than any clock of days gives a corpus."""
CHARACTER_TOKENIZERS = ("char", "byte")
"""Tokenizers whose tokens are characters: long sequences of few distinct tokens."""


@dataclass(frozen=True)
class Shape:
    emb: int
    hidden: int
    layers: int
    batch_size: int
    why: str
    lr: float
    """Adam's rate for this shape and batch under the default cosine schedule."""


def shape_for(tokens: int, tokenizer_kind: str, device_type: str) -> Shape:
    """The shape and batch a bare ``rnnlm train`` gives a corpus of ``tokens`` training tokens.

    On a CPU one layer of 256 (with the adaptive softmax ``auto`` chooses for a large
    vocabulary) is what a few cores train well in minutes: a second layer or a wider one
    halves the tokens a second for a gain that needs hours to show (``bench/cost_table.py``,
    ``bench/time_curve.py``). A GPU affords AWD-LSTM-sized layers.

    The rate goes with the shape: Adam at 0.008 under the cosine schedule is the
    ``wt2-cpu-quick`` recipe's, and on a 1M-word corpus it gives test ppl 91.8 in 3 epochs
    where 0.004 gives 103.4 and 0.002 124.7 (``bench/regularization_grid.py``); half of it
    for the narrower embeddings of a small corpus; the ``char-cpu`` and ``wt2-gpu`` presets'
    rates for characters and GPU shapes.

    A CPU batch is 32 streams: on that corpus, twice the updates of 64 per epoch give test ppl
    88.9 after 3 epochs against 90.3, and 81.5 against 82.0 after 9 (dropout 0.3), at about the
    same tokens a second (6% more on one thread, 4% fewer on two; on WikiText-2's 33k words
    about 13% fewer, won back per token: equal test ppl at 400 s, better below).
    """
    chars = tokenizer_kind in CHARACTER_TOKENIZERS
    size = f"{tokens:,}-token {'character' if chars else 'word'} corpus"
    if device_type == "cpu":
        if chars:
            return Shape(64, 512, 1, 32, f"a {size} on a CPU", lr=0.002)
        if tokens < CPU_WIDE_EMBEDDINGS:
            return Shape(128, 256, 1, 32, f"a {size} (under {CPU_WIDE_EMBEDDINGS:,}) on a CPU", lr=0.004)
        return Shape(256, 256, 1, 32, f"a {size} on a CPU", lr=0.008)
    where = f"on {device_type}"
    if chars:
        return Shape(128, 1024, 2, 64, f"a {size} {where}", lr=0.002)
    if tokens < LARGE_CORPUS:
        return Shape(256, 512, 2, 32, f"a {size} (under {LARGE_CORPUS:,}) {where}", lr=0.003)
    if tokens < HUGE_CORPUS:
        return Shape(650, 650, 2, 64, f"a {size} {where}", lr=0.003)
    return Shape(1024, 1024, 2, 128, f"a {size} {where}", lr=0.003)


def batch_limit(tokens: int, bptt: int) -> int:
    """The most streams that leave each :data:`SEGMENTS_PER_STREAM` segments of ``bptt`` tokens."""
    return max(1, tokens // (bptt * SEGMENTS_PER_STREAM))


def fit_job(job: TrainJob, tokens: int, tokenizer_kind: str, device_type: str, *,
            fixed_shape: bool, fixed_batch: bool = False, notes: list[str] | None = None) -> TrainJob:
    """``job`` with the options nobody set chosen for ``tokens`` training tokens (this process'
    share under torchrun) made by a ``tokenizer_kind`` tokenizer, on ``device_type``, and a preset's
    batch and epochs fitted to them; a line in ``notes`` for each choice.

    ``fixed_shape``: the model's shape comes from a saved model (``--init-from``, a resumed
    run); ``fixed_batch``: the batch comes from the run being resumed.
    """
    if job.origins is None:
        return job
    notes = notes if notes is not None else []
    model, train = job.model, job.train
    # A rate goes with the shape it was measured for: a saved model's (--init-from, a resumed
    # run) keeps the default.
    unset = [name for name in FITTED_OPTIONS if name not in job.origins
             and not (fixed_shape and name in (*SHAPE_OPTIONS, "lr")) and not (fixed_batch and name == "batch_size")]
    if unset:
        shape = shape_for(tokens, tokenizer_kind, device_type)
        chosen = {}
        sized = {name: getattr(shape, name) for name in SHAPE_OPTIONS if name in unset}
        if sized:
            if model.tied and "emb" in sized:  # a tied embedding is as wide as the output
                sized["emb"] = sized.get("hidden", model.hidden)
            model = dataclasses.replace(model, **sized)
            flags = "/".join(f"--{name}" for name in ("layers", "hidden", "emb") if name in sized)
            chosen[flags] = f"{model.layers}x{model.hidden} {model.cell}, {model.emb}-wide embeddings"
        if "batch_size" in unset:
            batch = min(shape.batch_size, _power_of_two_at_most(batch_limit(tokens, train.bptt)))
            train = dataclasses.replace(train, batch_size=batch)
            chosen["--batch-size"] = f"batch {batch}"
        if "lr" in unset and train.optimizer in ("adam", "adamw"):  # an SGD rate is another scale
            train = dataclasses.replace(train, lr=shape.lr)
            chosen["--lr"] = f"--lr {shape.lr:g}"
        if chosen:
            notes.append(f"{', '.join(chosen.values())}: chosen for {shape.why} "
                         f"({'/'.join(chosen)} to choose yourself)")
    train = _fit_preset(job, train, tokens, notes, fixed_batch)
    train = _epochs_for_the_clock(job, train, notes)
    return dataclasses.replace(job, model=model, train=train)


def _epochs_for_the_clock(job: TrainJob, train, notes: list[str]):
    """With a time limit and no step or epoch limit set, the clock ends the run: a fast machine
    trains the whole --max-time instead of stopping at the default epochs, and the schedule
    anneals over the time."""
    if not train.max_time or {"epochs", "max_steps"} & set(job.origins):
        return train
    notes.append(f"--max-time {train.max_time:g} ends the run (the epochs are not bounded; --epochs bounds them)")
    return dataclasses.replace(train, epochs=CLOCK_EPOCHS)


def _fit_preset(job: TrainJob, train, tokens: int, notes: list[str], fixed_batch: bool):
    """A preset's batch lowered to what the corpus can fill, and its epochs raised when they
    end the run long before the preset's step budget; a budget that covers under an epoch is told."""
    preset = f"preset {job.preset}"
    from_preset = {name for name, origin in job.origins.items() if origin == "preset"}
    limit = batch_limit(tokens, train.bptt)
    if "batch_size" in from_preset and train.batch_size > limit and not fixed_batch:
        batch = _power_of_two_at_most(limit)
        notes.append(f"{preset}: its batch of {train.batch_size} streams is more than {tokens:,} training tokens fill "
                     f"({SEGMENTS_PER_STREAM} segments of {train.bptt} tokens each); using {batch} "
                     "(--batch-size chooses)")
        train = dataclasses.replace(train, batch_size=batch)
    steps_per_epoch = max(1, (tokens - 1) // train.batch_size // train.bptt)
    if {"epochs", "max_steps"} <= from_preset and train.max_steps:
        planned = train.epochs * steps_per_epoch
        if planned < train.max_steps:
            epochs = math.ceil(train.max_steps / steps_per_epoch)
            notes.append(f"{preset}: {train.epochs} epochs of this small corpus are {planned:,} steps, not the "
                         f"{train.max_steps:,} it plans; training {epochs} epochs (--epochs chooses)")
            train = dataclasses.replace(train, epochs=epochs)
        elif train.max_steps < steps_per_epoch:
            notes.append(f"{preset}: its {train.max_steps:,} steps cover {train.max_steps / steps_per_epoch:.2f} "
                         f"epochs of this large corpus; give --max-steps 0 and --max-time SECONDS to train longer")
    return train


def _power_of_two_at_most(limit: int) -> int:
    return 1 << (max(limit, 1).bit_length() - 1)
