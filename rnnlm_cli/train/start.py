"""Where a run's weights come from: a fresh model with its output layer fitted to the
tokens, ``--init-from``'s model, or the run being resumed; and what the run keeps of each.
"""

from __future__ import annotations

import dataclasses

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.models.config import ModelConfig, shape_keys
from rnnlm_cli.models.output_layer import MIN_VOCAB, choose_cutoffs, cutoffs_for, is_fixed, token_counts
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file, tokenizer_to_learn
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.data import PreparedData
from rnnlm_cli.train.job import TOKENIZER_OPTIONS, TrainJob
from rnnlm_cli.train.resume import AUTO


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


def init_model(job: TrainJob, data: PreparedData, notes: list[str], resume_from=None, initial=None,
                fresh: ModelConfig | None = None):
    """The model to train: shaped as the resumed run's (checkpoint), ``initial`` (--init-from's
    loaded ``(model, tokenizer, checkpoint)``), or fresh: ``fresh`` when its output layer was
    already chosen, else ``job.model`` with one fitted to ``data``."""
    from rnnlm_cli.models.lm import build_model

    if resume_from is not None:
        # The weights come from the saved state; only its shape and settings are needed here.
        return build_model(_model_config(job, resume_from.model_config, "the run being resumed"))
    if initial is None:
        if fresh is None:
            fresh = output_layer(dataclasses.replace(job.model, vocab_size=data.tokenizer.vocab_size), data.train)
        return build_model(fresh)
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


def why_not_resumed(job: TrainJob, saved, fingerprint) -> str | None:
    """With ``--resume auto`` and ``--init-from``, why the saved run is not the one to continue
    (None: it is): it trained on other data (a corpus that grew overnight), or its steps or
    epochs are done. ``fingerprint()`` gives the training tokens' fingerprint. Any other
    combination resumes what it was given, and the resume checks refuse what does not fit."""
    if saved is None or job.resume != AUTO or job.init_from is None:
        return None
    config = saved.train_config if isinstance(saved.train_config, dict) else {}
    provenance = config.get("provenance")
    if not isinstance(provenance, dict) or provenance.get("data_fingerprint") != fingerprint():
        return "holds a run on other data"
    state = saved.training_state if isinstance(saved.training_state, dict) else {}
    progress = state.get("progress") if isinstance(state.get("progress"), dict) else {}
    step, epoch = progress.get("step"), progress.get("epoch")
    if type(step) is int and job.train.max_steps and step >= job.train.max_steps:
        return f"holds a finished run (step {step} of --max-steps {job.train.max_steps})"
    if type(epoch) is int and epoch > job.train.epochs:
        return f"holds a finished run ({job.train.epochs} epochs done)"
    return None


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
        elif fingerprint(tokenizer_from_file(source)) != fingerprint(tokenizer):
            raise TokenizerMismatchError(f"--tokenizer {source} differs from the tokenizer of the model in "
                                         f"{job.init_from}, which the run keeps; drop --tokenizer")
    unused = [name for name in TOKENIZER_OPTIONS if (job.origins or {}).get(name) in ("flag", "config")]
    if unused:
        names = ", ".join("--" + name.replace("_", "-") for name in unused)
        notes.append(f"warning: {names} not used: the run keeps the tokenizer of {job.init_from}")


KEPT_ON_RESUME = {"batch_size": int, "lr": float, "clip": float, "schedule": str}
"""Options a resumed run keeps from the run it continues unless given again, with their types."""


def saved_settings(job: TrainJob, saved) -> TrainJob:
    """A resumed run keeps the batch, rate, clip and schedule it was started with unless given:
    a batch (or rate) chosen for the corpus and device could differ on another machine, the
    saved state is only valid with its own batch (a given one is checked against it), and a
    run begun under an earlier rnnlm's defaults continues under them, not under today's."""
    config = saved.train_config if isinstance(saved.train_config, dict) else {}
    kept = {}
    for name, kind in KEPT_ON_RESUME.items():
        value = config.get(name)
        given = job.origins is None or job.origins.get(name) in ("flag", "config")
        if given or value is None or type(value) is not kind and not (kind is float and type(value) is int):
            continue  # a damaged value is refused by the state's checks
        kept[name] = value
    if not kept:
        return job
    try:
        return dataclasses.replace(job, train=dataclasses.replace(job.train, **kept))
    except UsageError:
        return job  # out of range: the state's checks say what is wrong with it
