"""A training job, and the one place its options are resolved.

Every option of ``rnnlm train`` is a field of one dataclass: :class:`ModelConfig`,
:class:`TrainConfig`, :class:`TokenizerConfig`, or :class:`JobConfig` (the files a job
reads and writes). :func:`resolve_train` takes each from, lowest first: the field's
default < a preset < the ``--config`` YAML file < the flags given. An option added to one of
those classes is a valid YAML key at once; a key no class has is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from rnnlm_cli.config import TokenizerConfig, TrainConfig, load_yaml, resolve
from rnnlm_cli.errors import UsageError, shown
from rnnlm_cli.models.config import ModelConfig


@dataclass(frozen=True)
class JobConfig:
    """The options of ``rnnlm train`` that no other config class holds: what to read and where to write."""

    tokenizer: str | None = None
    """word, char, byte, sentencepiece (learned from the corpus), or a tokenizer JSON / model / token file."""
    valid: str | None = None
    """Validation text or token file (none: the end of the corpus is held out)."""
    out: str = "model.pt"
    """Where the best model goes; the run's other files go beside it."""
    strict: bool = False
    """Refuse invalid UTF-8 instead of replacing it."""
    resume: str | None = None
    """Continue a stopped run from its <stem>.last.pt, or 'auto': that file beside --out if it exists."""
    init_from: str | None = None
    """Start from this model's tokenizer, shape and weights (retraining on new text)."""
    promote_if_better: str | None = None
    """After training, replace this model file only if the new model validates better (else exit 3)."""
    plot: bool = False
    """Draw the learning curves into <stem>.curve.png at the end (needs the plot extra)."""


@dataclass(frozen=True)
class TrainJob:
    """Everything a run needs; the model's vocabulary size comes from the tokenizer."""

    corpus: str
    """Training text (plain or .gz), '-' for stdin, or a token file."""
    out: str
    """Where the best model goes; <stem>.last.pt, <stem>.metrics.jsonl and the token files go beside it."""
    model: ModelConfig
    """The model's shape (vocab_size is a stand-in until the tokenizer is known)."""
    train: TrainConfig
    """Optimisation, batching, budget and output."""
    tokenizer: str | None = None
    """A kind to learn (word, char, byte, sentencepiece) or a tokenizer/model/token file;
    None: the token file's own tokenizer, or a word tokenizer learned from text."""
    tokenizer_config: TokenizerConfig = TokenizerConfig()
    """How to learn the tokenizer (its kind comes from ``tokenizer``)."""
    valid: str | None = None
    """Validation text or token file; None: hold out the end of the corpus."""
    strict: bool = False
    """Refuse invalid UTF-8 instead of replacing it."""
    resume: str | None = None
    """A ``.last.pt`` file to continue from, or "auto": ``<stem>.last.pt`` if it exists."""
    init_from: str | None = None
    """A model whose tokenizer, shape and weights the run starts from."""
    promote_to: str | None = None
    """After training, replace this model file when the new model validates better."""
    model_flags: tuple[str, ...] = ()
    """Model options the user gave explicitly (checked against --init-from's model)."""
    plot: bool = False
    """Draw the learning curves into <stem>.curve.png once the run is over (the caller's part)."""
    origins: Mapping[str, str] | None = None
    """Where each option that was set came from: "flag", "config" or "preset"; an option not
    in it has its default, which the run may fit to the corpus and device
    (:mod:`~rnnlm_cli.train.fitting`). None (a job built in code): every value is as given."""
    preset: str | None = None
    """The preset the job was resolved with, for what is said about it."""


def _settable(cls: type, *fixed: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in fields(cls) if spec.name not in fixed)


MODEL_OPTIONS = _settable(ModelConfig, "vocab_size")  # the tokenizer decides the vocabulary
"""Options of the model, in ModelConfig's field order."""
TOKENIZER_OPTIONS = _settable(TokenizerConfig, "kind")  # --tokenizer names the kind
"""Options of a tokenizer learned from the corpus."""
TRAIN_OPTIONS = _settable(TrainConfig)
"""Options of the training itself."""
JOB_OPTIONS = _settable(JobConfig)
"""Options naming the files of the job."""
OPTIONS = frozenset(MODEL_OPTIONS + TOKENIZER_OPTIONS + TRAIN_OPTIONS + JOB_OPTIONS)
"""Every option ``rnnlm train`` takes from flags, a preset or a --config file."""
_JOB_KINDS = {spec.name: bool if spec.type == "bool" else str for spec in fields(JobConfig)}
"""A job option is a switch or a file name (``str | None``)."""


def resolve_train(corpus: str, flags: Mapping[str, Any], preset: str | None = None,
                  config_path: str | None = None) -> TrainJob:
    """The job of ``rnnlm train CORPUS``: defaults < ``preset`` < ``config_path`` YAML < ``flags``.

    ``flags`` maps option names (``hidden``, ``promote_if_better``...) to the values given
    on the command line; None means not given. Every value is checked here, before any file
    is read or written.
    """
    stray = sorted(set(flags) - OPTIONS)
    if stray:
        raise TypeError(f"not options of rnnlm train: {', '.join(stray)}")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if preset is not None:
        from rnnlm_cli.presets import load_preset

        values = load_preset(preset)
        _check_keys(f"preset {preset}", values)
        origins.update(dict.fromkeys(values, "preset"))
    if config_path is not None:
        own = load_yaml(config_path)
        _check_keys(config_path, own)
        values = {**values, **own}
        origins.update(dict.fromkeys(own, "config"))
    origins.update({key: "flag" for key, value in flags.items() if value is not None})
    # vocab_size=2 stands in until the tokenizer is known; it lets every model option be
    # checked before any data is read.
    model = resolve(ModelConfig, _only(values, MODEL_OPTIONS), _only(flags, MODEL_OPTIONS), vocab_size=2)
    train = resolve(TrainConfig, values, flags)
    tokenizer_config = resolve(TokenizerConfig, _only(values, TOKENIZER_OPTIONS), _only(flags, TOKENIZER_OPTIONS))
    job = resolve(JobConfig, values, flags)
    return TrainJob(
        corpus=corpus, out=job.out, model=model, train=train, tokenizer=job.tokenizer,
        tokenizer_config=tokenizer_config, valid=job.valid, strict=job.strict, resume=job.resume,
        init_from=job.init_from, promote_to=job.promote_if_better, plot=job.plot,
        model_flags=tuple(k for k in MODEL_OPTIONS if flags.get(k) is not None or k in values),
        origins=origins, preset=preset,
    )


def resolved_options(job: TrainJob, fitted: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every option of ``job`` by section (model, training, tokenizer, files), as a ``--config``
    file would give it; the options in ``fitted`` that nobody set map to None (chosen when the
    run sees its corpus)."""
    def unset(name: str) -> bool:
        return name in fitted and job.origins is not None and name not in job.origins

    files = {"tokenizer": job.tokenizer, "valid": job.valid, "out": job.out, "strict": job.strict,
             "resume": job.resume, "init_from": job.init_from, "promote_if_better": job.promote_to, "plot": job.plot}
    sections = {
        "model": {name: getattr(job.model, name) for name in MODEL_OPTIONS},
        "training": {name: getattr(job.train, name) for name in TRAIN_OPTIONS},
        "tokenizer": {name: getattr(job.tokenizer_config, name) for name in TOKENIZER_OPTIONS},
        "files": {name: files[name] for name in JOB_OPTIONS},
    }
    return {section: {name: None if unset(name) else value for name, value in values.items()}
            for section, values in sections.items()}


def _only(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in names}


def _check_keys(path: str, values: Mapping[str, Any]) -> None:
    """Refuse keys no option has, and job options that are not of their type.

    The config classes check their own values; a job option is a file name or a switch.
    """
    unknown = sorted(set(values) - OPTIONS)
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(unknown)}")
    for key, value in values.items():
        kind = _JOB_KINDS.get(key)
        if kind is None or value is None or (isinstance(value, kind) and (kind is bool or value)):
            continue
        # bool("false") is True, and an int path would be taken for a file descriptor.
        expected = "true or false" if kind is bool else "a file name (quote it if it looks like a number)"
        raise UsageError(f"{path}: option {key}: expected {expected}, got {shown(value)}")
