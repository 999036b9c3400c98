"""Typed configuration: frozen dataclasses, checked on construction.

:func:`resolve` builds one of them with the precedence built-in defaults < YAML file
(``--config``) < flags given on the command line; ``rnnlm train`` resolves all of its
classes at once in :func:`rnnlm_cli.train.job.resolve_train`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from rnnlm_cli.errors import InputMissingError, UsageError, shown
from rnnlm_cli.option_files import read_options

SCHEDULES = ("constant", "plateau", "cosine")
AMP_MODES = ("auto", "bf16", "off")
TOKENIZER_KINDS = ("word", "char", "byte", "sentencepiece")
SP_MODEL_TYPES = ("bpe", "unigram")
OPTIMIZERS = ("sgd", "adam", "adamw")

MAX_SEED = 2**32 - 1
"""Largest seed: numpy's range, so torch, numpy and Python's random all get the same number."""
_INT64 = 2**63 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def check_values(config: Any, names: Mapping[str, str] | None = None) -> None:
    """Every field of the dataclass ``config`` holds its declared type; floats are finite
    and integers fit in 64 bits.

    Run first in ``__post_init__``: values come from flags, YAML files and checkpoints, and
    a NaN passes every range check written as ``not x < low``, an infinity every check
    without an upper bound, a string breaks the comparisons, and an integer past 64 bits
    fails later inside torch or numpy (an internal error, not a usage error). ``names``
    maps a field to its flag where the two differ.
    """
    for spec in fields(config):
        value = getattr(config, spec.name)
        kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
        if kind.endswith(" | None"):
            if value is None:
                continue
            kind = kind[: -len(" | None")]
        name = (names or {}).get(spec.name, "--" + spec.name.replace("_", "-"))
        if kind == "float":
            _check(isinstance(value, (int, float)) and not isinstance(value, bool),
                   f"{name} must be a number, got {shown(value)}")
            _check(_finite(value), f"{name} must be a finite number, got {shown(value)}")
        elif kind == "int":
            _check(isinstance(value, int) and not isinstance(value, bool),
                   f"{name} must be a whole number, got {shown(value)}")
            _check(-_INT64 <= value <= _INT64, f"{name} is out of range (more than 64 bits), got {shown(value)}")
        elif kind == "bool":
            _check(isinstance(value, bool), f"{name} must be true or false, got {shown(value)}")
        elif kind == "str":
            _check(isinstance(value, str), f"{name} must be text, got {shown(value)}")


def check_seed(seed: Any, name: str = "--seed") -> None:
    _check(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED,
           f"{name} must be a whole number between 0 and {MAX_SEED}, got {shown(seed)}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class TokenizerConfig:
    """How to learn a tokenizer from a corpus (ignored when an existing one is given)."""

    kind: str = "word"
    """word, char, byte or sentencepiece."""
    min_count: int = 1
    """word/char: drop entries seen fewer times (they become <unk>)."""
    max_size: int = 0
    """word/char: keep at most this many entries, specials included (0: no limit)."""
    vocab_size: int = 8000
    """sentencepiece: vocabulary size."""
    model_type: str = "unigram"
    """sentencepiece: bpe or unigram."""
    sample_lines: int = 1_000_000
    """sentencepiece: lines sampled from the corpus to learn from (bounds memory)."""
    grow_vocab: float | None = None
    """With --init-from (or --tokenizer FILE): learn a new word/char vocabulary from the corpus
    when at least this share of its words is outside the model's (0: every run); shared words
    keep their rows, new ones start fresh. Unset: the model's vocabulary is kept.

    A run that learns its vocabulary (no --init-from, no --tokenizer FILE: the first night of a
    cron job) learns it anyway, and the option changes nothing there. Promotion compares models
    of different vocabularies on the same events (:mod:`rnnlm_cli.train.promote`)."""
    reverse: bool = False
    """Read each line right to left: a backward model, as Kaldi's backward RNNLM (each line's
    tokens last first, the line end last). The model records it: eval, n-best rescoring and
    generate reverse the text themselves. Per-word scores (eval --debug 2, --output token-scores)
    stay in reading order, each word scored given the words after it, the sentence end last;
    generate's --prompt is the end of the text it writes.

    Char, byte and sentencepiece tokenizers reverse their tokens (characters, UTF-8 bytes, the
    forward segmentation's pieces). A model or token file that reads right to left keeps doing
    so without the option; with it, one that reads left to right is refused."""

    def __post_init__(self) -> None:
        check_values(self, {"model_type": "--sp-model", "sample_lines": "sample_lines"})
        _check(self.kind in TOKENIZER_KINDS,
               f"unknown tokenizer kind {self.kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
        _check(self.model_type in SP_MODEL_TYPES,
               f"unknown sentencepiece model type {self.model_type!r}; choose bpe or unigram")
        _check(self.min_count >= 1, f"--min-count must be at least 1, got {self.min_count}")
        _check(self.max_size == 0 or self.max_size >= 3, f"--max-size must be 0 or at least 3, got {self.max_size}")
        _check(8 <= self.vocab_size <= 1_000_000, f"--vocab-size must be between 8 and 1000000, got {self.vocab_size}")
        _check(self.sample_lines >= 1, "sample_lines must be positive")
        _check(self.grow_vocab is None or 0 <= self.grow_vocab <= 1,
               f"--grow-vocab must be a share between 0 and 1, got {self.grow_vocab}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, batching, budget and output."""

    lr: float = 2e-3
    """Learning rate."""
    optimizer: str = "adam"
    """sgd, adam or adamw."""
    weight_decay: float = 0.0
    """L2 penalty (decoupled for adamw)."""
    clip: float = 1.0
    """Clip the total gradient norm to this value (0: no clipping)."""
    batch_size: int = 32
    """Parallel streams the corpus is cut into."""
    bptt: int = 35
    """Tokens per truncated back-propagation segment; the state carries across segments."""
    epochs: int = 10
    """Passes over the training tokens."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no limit)."""
    max_time: float = 0.0
    """Stop after this many seconds of training, then validate (reading the data and the final
    validation come on top; see --max-wall-time; 0: no limit)."""
    max_wall_time: float = 0.0
    """Bound the whole command's wall time, in seconds: reading the data, training, the final
    validation and save; training stops early enough for what follows it, and a run left too
    little to train (50 steps, or 1% of an epoch up to 500) is refused before its first step,
    exit 4 (0: no limit)."""
    seed: int = 1234
    """Seed for weights, dropout and data order."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    valid_fraction: float = 0.05
    """Without --valid: share of the corpus held out from its end for validation."""
    valid_max_tokens: int = 1_000_000
    """Without --valid: at most this many held-out tokens."""
    log_interval: int = 50
    """Steps between progress records in metrics.jsonl and the log."""
    eval_batch_size: int = 10
    """Streams used to compute validation perplexity."""
    max_bad_steps: int = 5
    """Stop with an error after this many steps in a row with a non-finite loss or gradient."""
    keep_checkpoints: int = 0
    """Also keep the model of each validation as <stem>.step<N>.pt, the last N of them (0: none)."""
    deterministic: bool = False
    """Seed everything and use deterministic kernels, so a run can be repeated bit for bit."""
    l1: float = 0.0
    """L1 penalty on the weights (not biases), added to the loss."""
    ar: float = 0.0
    """Activation regularisation: this times the mean square of the dropped last-layer output."""
    tar: float = 0.0
    """Temporal activation regularisation: this times the mean square of h_t - h_(t-1) (raw output)."""
    schedule: str = "cosine"
    """Learning-rate schedule: cosine (from --lr to --min-lr over the run's steps or its --max-time),
    constant, or plateau (divide by --lr-decay when validation stalls)."""
    lr_decay: float = 4.0
    """plateau: the factor the learning rate is divided by."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many steps, before the schedule."""
    min_lr: float = 0.0
    """cosine: the final learning rate; plateau: the rate below which training stops."""
    asgd: bool = False
    """NT-ASGD (with --optimizer sgd): average the weights once validation stalls for --nonmono checks,
    and validate with the average."""
    nonmono: int = 5
    """NT-ASGD: validations without improvement before averaging starts."""
    patience: int = 0
    """Early stopping: stop after this many validations without improvement (0: never)."""
    random_bptt: bool = False
    """Random BPTT length around --bptt per step, with the learning rate scaled by length (Merity et al.)."""
    embeddings: str = ""
    """word2vec/GloVe text file to initialise the input embeddings from."""
    freeze_embeddings: bool = False
    """Keep the --embeddings vectors fixed (needs --untied)."""
    synonyms: str = ""
    """File of word pairs, one pair a line, whose embeddings are pulled together."""
    synonym_weight: float = 0.0
    """Weight of the synonym loss (mean squared distance of the pairs' embeddings)."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 autocast where the hardware has native bf16: CUDA, or a CPU with AMX), bf16, or off."""
    max_params: int = 0
    """Largest model, in parameters, a run may build or load (0: sized to this machine's memory)."""

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_values(self, {name: name for name in ("valid_fraction", "valid_max_tokens", "eval_batch_size")})
        _check(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        _check(0.0 < self.lr <= 1000.0, f"--lr must be positive and at most 1000, got {self.lr}")
        _check(self.weight_decay >= 0.0, f"--weight-decay must be non-negative, got {self.weight_decay}")
        _check(self.clip >= 0.0, f"--clip must be non-negative, got {self.clip}")
        _check(1 <= self.batch_size <= 65536, f"--batch-size must be between 1 and 65536, got {self.batch_size}")
        _check(1 <= self.bptt <= 100_000, f"--bptt must be between 1 and 100000, got {self.bptt}")
        _check(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        _check(self.max_params >= 0, f"--max-params must be 0 (sized to this machine) or a parameter count, got {self.max_params}")
        _check(self.max_steps >= 0, f"--max-steps must be non-negative, got {self.max_steps}")
        _check(self.max_time >= 0.0, f"--max-time must be non-negative, got {self.max_time}")
        _check(self.max_wall_time >= 0.0, f"--max-wall-time must be non-negative, got {self.max_wall_time}")
        _check(0.0 < self.valid_fraction < 0.5, f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")
        _check(self.valid_max_tokens >= 2, "valid_max_tokens must be at least 2")
        _check(self.log_interval >= 1, f"log_interval must be at least 1, got {self.log_interval}")
        _check(self.eval_batch_size >= 1, f"eval_batch_size must be at least 1, got {self.eval_batch_size}")
        _check(self.max_bad_steps >= 1, f"--max-bad-steps must be at least 1, got {self.max_bad_steps}")
        _check(self.keep_checkpoints >= 0, f"--keep-checkpoints must be non-negative, got {self.keep_checkpoints}")
        for name in ("l1", "ar", "tar", "min_lr", "synonym_weight"):
            _check(getattr(self, name) >= 0.0, f"--{name.replace('_', '-')} must be non-negative, got {getattr(self, name)}")
        _check(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        _check(self.lr_decay > 1.0, f"--lr-decay must be above 1, got {self.lr_decay}")
        _check(self.warmup_steps >= 0 and self.patience >= 0 and self.nonmono >= 1,
               "--warmup-steps and --patience must be non-negative, --nonmono positive")
        _check(self.amp in AMP_MODES, f"unknown --amp {self.amp!r}; choose one of {', '.join(AMP_MODES)}")
        _check(not self.asgd or self.optimizer == "sgd", "--asgd averages SGD: use it with --optimizer sgd")


@dataclass(frozen=True)
class SamplingConfig:
    """How ``rnnlm generate`` draws tokens (:mod:`rnnlm_cli.models.generate`)."""

    max_tokens: int = 100
    """Tokens to generate per sample."""
    temperature: float = 1.0
    """Divides the logits; 0 picks the most likely token every step."""
    top_k: int = 0
    """Keep only the k most likely tokens (0: all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches p (1: all)."""
    num_samples: int = 1
    """Independent samples, drawn together as one batch."""
    stop_at_eos: bool = False
    """End a sample at its first end of line."""
    seed: int | None = None
    """Seed: the same seed gives the same text (none given: one drawn at random)."""

    def __post_init__(self) -> None:
        if self.seed is not None:
            check_seed(self.seed)
        check_values(self)
        if not 1 <= self.max_tokens <= 10_000_000:
            raise UsageError(f"--max-tokens must be between 1 and 10000000, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 100.0:
            raise UsageError(f"--temperature must be between 0 and 100, got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be non-negative, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.num_samples <= 65536:
            raise UsageError(f"--num-samples must be between 1 and 65536, got {self.num_samples}")


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML mapping of option names (dashes or underscores) to single values from a
    file, a pipe (a FIFO, ``<(...)``) or stdin (``-``), read once."""
    if path == "-":
        return read_options(path)
    if not os.path.exists(path):
        raise InputMissingError(f"{path}: no such config file")
    if os.path.isdir(path):
        raise InputMissingError(f"{path}: is a directory, expected a config file")
    return read_options(path)


def resolve(cls: type, yaml_values: Mapping[str, Any], flags: Mapping[str, Any], **fixed: Any) -> Any:
    """Build ``cls`` from defaults < ``yaml_values`` < ``flags`` (``None`` flags were not given).

    Keys of ``yaml_values`` that ``cls`` does not have are ignored here: a YAML file holds
    the options of several classes, and the caller refuses keys that none of them has.
    """
    names = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for source in (yaml_values, flags):
        for key, value in source.items():
            if key in names and value is not None:
                values[key] = value
    values.update(fixed)
    for key, value in list(values.items()):
        values[key] = _coerce(cls.__name__, key, names[key], value)
    return cls(**values)


def _coerce(owner: str, key: str, spec: dataclasses.Field, value: Any) -> Any:
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"option {key}: expected {kind}, got {shown(value)}") from None
    return value


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
