"""rnnlm train: learn a language model from a corpus."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Optional

import typer

from rnnlm_cli.cli.field_flags import FieldFlag, field_flags
from rnnlm_cli.cli.options import FITTED, FITTED_TO_EPOCHS, choices, default_of, switch, with_default
from rnnlm_cli.cli.train_report import TrainingReporter, report_result
from rnnlm_cli.cli.ui import launched_rank, log
from rnnlm_cli.config import AMP_MODES, OPTIMIZERS, SCHEDULES, SP_MODEL_TYPES, TOKENIZER_KINDS, TokenizerConfig, TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.registry import CELLS, IMPLS
from rnnlm_cli.presets import list_presets
from rnnlm_cli.train.job import JobConfig

NAME = "train"
SUMMARY = "Train a language model on a corpus; keep the best model by validation."
HELP = (
    "Train a recurrent language model on CORPUS (text, .gz text, or a token file from "
    "'rnnlm tokenize'). The best model by validation perplexity is written to --out; "
    "beside it go <stem>.last.pt (last training state), <stem>.metrics.jsonl (the curve) and, "
    "with --plot, <stem>.curve.png. A summary of the run ends the log on stderr. "
    "Options resolve as: built-in defaults < --config YAML < flags. "
    "Shape and batch options nobody set (--layers, --hidden, --emb, --batch-size) are fitted to the "
    "corpus and device: one layer of 256 on a CPU, two of 650 on a GPU for a large corpus, and a "
    "batch that leaves each stream 50 segments; a log line says what was chosen. Dropout nobody set "
    "is fitted to the epochs the run will see (its steps, or what --max-time buys at the speed timed "
    "here). A preset's batch and epochs are fitted to a smaller or larger corpus than it was tuned on, "
    "and said so. A line says when training improves while validation does not (overfitting)."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm train sample_data/train.txt --valid sample_data/valid.txt --out runs/sample/model.pt\n\n"
    "  rnnlm train corpus.txt --cell gru --clip 1.0 --max-time 600 --plot --out model.pt\n\n"
    "  rnnlm train corpus.tok --config big.yaml --hidden 1024 --device cuda --out big/model.pt\n\n"
    "  rnnlm train corpus.txt --optimizer sgd --lr 30 --asgd --random-bptt --ar 2 --tar 1 --out awd.pt\n\n"
    "  rnnlm train corpus.txt --preset char-cpu --max-time 300 --out char/model.pt\n\n"
    "  rnnlm train corpus.txt --reverse --valid valid.txt --out backward.pt\n\n"
    "Presets (--preset NAME; defaults < preset < --config < flags):\n\n"
    + "\n\n".join(f"  {name}: {about}" for name, about in list_presets().items())
)

_NOT_OPTIONS = ("corpus", "config", "preset", "json_output", "show_config")
"""Parameters of :func:`command` that say where options come from or how to print, not what to train."""


def _held_out() -> str:
    fraction, tokens = default_of(TrainConfig, "valid_fraction"), default_of(TrainConfig, "valid_max_tokens")
    count = f"{tokens // 1_000_000}M" if tokens % 1_000_000 == 0 else f"{tokens:,}"
    return f"hold out the corpus' last {fraction:.0%}, at most {count} tokens"


def _dropout_unset() -> str:
    from rnnlm_cli.train.regularization_fit import DROPOUT_BY_EPOCHS

    (few, none), (many, most) = DROPOUT_BY_EPOCHS[0], DROPOUT_BY_EPOCHS[-1]
    return f"unset, {none:g} for a run of {few:g} epochs or fewer, rising to {most:g} at {many:g} and more"


def _cell_help() -> str:
    return with_default(f"Recurrent cell: {', '.join(CELLS)}", ModelConfig, "cell")


def refresh_cell_option(command: Any) -> None:
    """--cell's choices and help from the registry as it is now, so a cell registered after
    this module was imported is listed as well."""
    for param in command.params:
        if param.name == "cell":
            param.metavar, param.help = choices(*CELLS), _cell_help()


_model = partial(FieldFlag, ModelConfig)
_train = partial(FieldFlag, TrainConfig)
_job = partial(FieldFlag, JobConfig)
_tokenizer = partial(FieldFlag, TokenizerConfig)
"""Flags backed by a field of each class."""


# Every option of the command, in the order --help lists them: the strings are the command's
# own parameters (where options come from, how to print), the rest flags made from the fields.
ORDER = (
    "ctx", "corpus",
    _job("out", decls=("--out", "-o"), metavar="FILE"),
    _job("valid", metavar="FILE", shown_default=_held_out()),
    "config", "preset",
    _job("tokenizer", metavar=choices(*TOKENIZER_KINDS, "FILE"), shown_default=default_of(TokenizerConfig, "kind")),
    _tokenizer("min_count"), _tokenizer("max_size"), _tokenizer("vocab_size"),
    _tokenizer("model_type", decls=("--sp-model",), metavar=choices(*SP_MODEL_TYPES)),
    _tokenizer("grow_vocab", metavar="RATE"), _tokenizer("reverse"),
    _model("cell", metavar=choices(*CELLS)), _model("impl", metavar=choices(*IMPLS)),
    _model("layers", shown_default=FITTED), _model("hidden", shown_default=FITTED), _model("emb", shown_default=FITTED),
    _model("dropout", shown_default=FITTED_TO_EPOCHS, unset=_dropout_unset()),
    _model("tied", decls=("--tied/--untied",), labels={False: "untied", True: "tied"}),
    _model("dropout_emb"), _model("dropout_input"), _model("dropout_hidden"), _model("dropout_output"),
    _model("locked_dropout"), _model("weight_drop"), _model("attention"), _model("mogrifier_rounds"),
    _model("adaptive_softmax", labels={"": "full softmax"}), _model("adaptive_div"),
    _train("optimizer", metavar=choices(*OPTIMIZERS)),
    _train("lr", shown_default=FITTED,
           unset="unset with Adam, chosen with the shape (0.008 for a CPU's 1x256 word model), else 0.002"),
    _train("weight_decay"), _train("l1"), _train("ar"), _train("tar"),
    _train("schedule", metavar=choices(*SCHEDULES)), _train("lr_decay"), _train("warmup_steps"), _train("min_lr"),
    _train("asgd"), _train("nonmono"), _train("patience"), _train("random_bptt"),
    _train("embeddings", metavar="FILE"), _train("freeze_embeddings"),
    _train("synonyms", metavar="FILE"), _train("synonym_weight"),
    _train("amp", metavar=choices(*AMP_MODES)), _train("clip"), _train("batch_size", shown_default=FITTED),
    _train("bptt"), _train("epochs"), _train("max_steps"), _train("max_time"), _train("max_wall_time"),
    _train("seed"), _train("device", metavar=choices("auto", "cpu", "cuda", "cuda:N", "mps")),
    _train("log_interval"), _job("strict"), _job("resume", metavar="FILE|auto"), _job("init_from", metavar="FILE"),
    _job("promote_if_better", metavar="FILE"), _train("deterministic"), _train("max_bad_steps"),
    _train("keep_checkpoints"), _train("max_params"), _job("plot"),
    "json_output", "show_config",
)


@field_flags(*ORDER)
def command(
    ctx: typer.Context,
    corpus: Optional[str] = typer.Argument(None, help="Training text (plain or .gz), '-' for stdin, or a token file.", show_default=False),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="YAML file of options (names as the flags, - or _)."),
    preset: Optional[str] = typer.Option(None, help="A shipped recipe (listed below); --config and flags override it."),
    json_output: bool = switch(False, "--json", help="Print the result as one JSON object."),
    show_config: bool = switch(False, "--show-config", help=(
        "Print the options as resolved (defaults < preset < --config < flags) as a --config YAML file, "
        "then exit; CORPUS may be left out, nothing is read or written.")),
    **options: Any,
) -> None:
    started = time.monotonic()  # --max-wall-time counts from here
    from rnnlm_cli.errors import UsageError
    from rnnlm_cli.files.roles import FileRole, check_one_stdin
    from rnnlm_cli.train.job import resolve_train
    from rnnlm_cli.train.job_files import check_stdin_read_once
    from rnnlm_cli.train.run import run_training

    # Click's own record of the options, by parameter name: a new option reaches the job
    # (or, with no field behind it, fails loudly) without a list kept here.
    flags = {name: value for name, value in ctx.params.items() if name not in _NOT_OPTIONS}
    if corpus is None and not show_config:
        raise UsageError("missing CORPUS: the training text, '-' for stdin, or a token file")
    # --config is read while the job is resolved, before the job's own files are checked.
    check_one_stdin([FileRole("CORPUS", corpus or ""), FileRole("--config", str(config or "")),
                     *(FileRole("--" + name.replace("_", "-"), flags.get(name) or "")
                       for name in ("valid", "tokenizer", "init_from", "embeddings", "synonyms", "resume"))])
    job = resolve_train(corpus or "-", flags, preset, str(config) if config is not None else None)
    check_stdin_read_once(job, str(config) if config is not None else None)  # a config's own paths too
    if show_config:
        from rnnlm_cli.train.job_files import check_printing_apart

        check_printing_apart(job, str(config) if config is not None else None)
        print(_config_yaml(job, preset, config))
        return
    if job.plot:
        from rnnlm_cli.train.plot import require_matplotlib

        require_matplotlib()  # before any data is read, not after an hour of training
    notes: list[str] = []
    reporter = TrainingReporter(notes)
    try:
        result = run_training(job, reporter, notes=notes, started=started)
    finally:
        reporter.close()
        if launched_rank() == 0:  # under torchrun, rank 0 speaks for the run (result may not exist)
            for note in notes:
                log(note)
    if result.rank == 0:  # under torchrun, rank 0 reports for the run
        report_result(result, job, json_output)


def _config_yaml(job: Any, preset: str | None, config: Path | None) -> str:
    """The job's options as a YAML file ``--config`` reads back, a comment per section; the
    options a run fits to its corpus and device, when unset, are comments that say so."""
    import yaml

    from rnnlm_cli.train.fitting import FITTED_OPTIONS
    from rnnlm_cli.train.job import resolved_options
    from rnnlm_cli.train.regularization_fit import FITTED_REGULARIZATION

    sources = "".join(f" {flag} {value}" for flag, value in (("--preset", preset), ("--config", config)) if value)
    lines = [f"# rnnlm train{sources}: every option, resolved (defaults < preset < --config < flags)"]
    fitted = {**dict.fromkeys(FITTED_OPTIONS, FITTED), **dict.fromkeys(FITTED_REGULARIZATION, FITTED_TO_EPOCHS)}
    for section, values in resolved_options(job, fitted=tuple(fitted)).items():
        lines.append(f"# {section}")
        for name, value in values.items():
            if value is None and name in fitted:
                lines.append(f"# {name}: {fitted[name]}")
            else:
                lines.append(yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False).strip())
    return "\n".join(lines)
