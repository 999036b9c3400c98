"""Where a run's weights come from: a fresh model with its output layer fitted to the
tokens, ``--init-from``'s model, or the run being resumed; and what the run keeps of each
(what a resumed run keeps of its settings: :mod:`rnnlm_cli.train.resume`).
"""

from __future__ import annotations

import dataclasses

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.models.config import ModelConfig, shape_keys
from rnnlm_cli.models.output_layer import MIN_VOCAB, choose_cutoffs, cutoffs_for, is_fixed
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file, tokenizer_to_learn
from rnnlm_cli.text.backward import LEFT_TO_RIGHT, directed
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.data import PreparedData
from rnnlm_cli.train.job import TOKENIZER_OPTIONS, TrainJob


FRESH_START = "or start a new run without --resume (its state file is then replaced)"
"""How to get past a state that cannot be resumed with today's options; ``--resume auto`` does it itself."""


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


def check_resumed_shape(job: TrainJob, saved_config: ModelConfig) -> ModelConfig:
    """The resumed run's model config with today's regularisation options; UsageError (saying
    how to start afresh) for a shape option it cannot take."""
    try:
        return _model_config(job, saved_config, "the run being resumed")
    except UsageError as exc:
        raise UsageError(f"{exc}, {FRESH_START}") from None


def init_model(job: TrainJob, data: PreparedData, notes: list[str], resume_from=None, initial=None,
                fresh: ModelConfig | None = None):
    """The model to train: shaped as the resumed run's (checkpoint), ``initial`` (--init-from's
    loaded ``(model, tokenizer, checkpoint)``), or fresh: ``fresh`` when its output layer was
    already chosen, else ``job.model`` with one fitted to ``data``."""
    from rnnlm_cli.models.lm import build_model

    if resume_from is not None:
        # The weights come from the saved state; only its shape and settings are needed here.
        return build_model(check_resumed_shape(job, resume_from.model_config))
    if initial is None:
        if fresh is None:
            fresh = output_layer(dataclasses.replace(job.model, vocab_size=data.tokenizer.vocab_size), data)
        return build_model(fresh)
    model, tokenizer, checkpoint = initial
    config = _model_config(job, checkpoint.model_config, job.init_from)
    if config != checkpoint.model_config:
        model = _with_config(model, **{k: getattr(config, k) for k in job.model_flags})
    notes.append(f"starting from the weights of {job.init_from}")
    if getattr(tokenizer, "pieces", None) != getattr(data.tokenizer, "pieces", None):  # --grow-vocab learned the corpus's vocabulary
        from rnnlm_cli.models.vocab_growth import regrow

        model, embedded, output = regrow(model, tokenizer.pieces, data.tokenizer.pieces)
        size = data.tokenizer.vocab_size
        moved = f" ({embedded - output:,} of them moved between softmax clusters: fresh output rows)" \
            if output < embedded else ""
        notes.append(f"vocabulary of {size:,} entries: {embedded:,} keep their rows from {job.init_from}{moved}, "
                     f"{size - embedded:,} start fresh")
    return model


def output_layer(config: ModelConfig, data: PreparedData, notes: list[str] | None = None) -> ModelConfig:
    """``config`` with its adaptive-softmax cutoffs written out as token counts, the form a
    checkpoint keeps: auto chosen from the frequencies of ``data``'s training tokens, shares of
    the vocabulary computed; a line in ``notes`` says what was chosen and why."""
    spec = config.adaptive_softmax
    if is_fixed(spec):
        cutoffs = config.cutoffs
        if notes is not None and spec.strip().endswith("%"):
            notes.append(f"output layer: adaptive softmax {','.join(map(str, cutoffs))} "
                         f"({spec} of the {config.vocab_size:,}-token vocabulary)")
    else:
        cutoffs, why = choose_cutoffs(data.token_counts(), config.tied)
        if notes is not None and (cutoffs or config.vocab_size >= MIN_VOCAB):  # a small vocabulary: nothing to choose
            notes.append(f"output layer: {why}")
    return dataclasses.replace(config, adaptive_softmax=",".join(map(str, cutoffs)))


def _with_config(model, **changes):
    from rnnlm_cli.models.lm import build_model

    rebuilt = build_model(dataclasses.replace(model.config, **changes))
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def word_knowledge(config: TrainConfig, model, tokenizer, notes: list[str], fresh: bool):
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


def check_tokenizer_options(job: TrainJob, tokenizer, notes: list[str]) -> None:
    """--init-from brings its model's tokenizer: a --tokenizer naming another is refused, and
    options for learning one are said to be unused (they would be silently ignored)."""
    from rnnlm_cli.text.tokenizers import fingerprint

    source = job.tokenizer
    if source is not None:
        if tokenizer_to_learn(source):
            if source != tokenizer.kind:
                raise UsageError(f"--tokenizer {source}: the model in {job.init_from} has a {tokenizer.kind} "
                                 "tokenizer, which the run keeps; drop --tokenizer")
        elif fingerprint(directed(tokenizer_from_file(source), job.tokenizer_config.reverse)) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"--tokenizer {source} differs from the tokenizer of the model in "
                                         f"{job.init_from}, which the run keeps; drop --tokenizer")
    if job.tokenizer_config.reverse and not tokenizer.reverse:
        raise UsageError(f"--reverse: the model in {job.init_from} reads each line {LEFT_TO_RIGHT}, and a model "
                         "keeps its direction; drop --reverse, or train a backward model without --init-from")
    # --grow-vocab learns a vocabulary of the model's kind, with --min-count and --max-size;
    # --reverse agrees with the model (a model's own direction is kept without it).
    used = ("reverse", *(("grow_vocab", "min_count", "max_size") if job.tokenizer_config.grow_vocab is not None else ()))
    unused = [name for name in TOKENIZER_OPTIONS
              if name not in used and (job.origins or {}).get(name) in ("flag", "config")]
    if unused:
        names = ", ".join("--" + name.replace("_", "-") for name in unused)
        notes.append(f"warning: {names} not used: the run keeps the tokenizer of {job.init_from}")
