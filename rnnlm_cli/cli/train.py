"""rnnlm train: learn a language model from a corpus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from rnnlm_cli.cli.options import FITTED, FITTED_TO_EPOCHS, choices, default_of, fitted_default, switch, with_default
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
    "Presets (--preset NAME; defaults < preset < --config < flags):\n\n"
    + "\n\n".join(f"  {name}: {about}" for name, about in list_presets().items())
)

_NOT_OPTIONS = ("corpus", "config", "preset", "json_output", "show_config")
"""Parameters of :func:`command` that say where options come from or how to print, not what to train."""


def _held_out() -> str:
    fraction, tokens = default_of(TrainConfig, "valid_fraction"), default_of(TrainConfig, "valid_max_tokens")
    count = f"{tokens // 1_000_000}M" if tokens % 1_000_000 == 0 else f"{tokens:,}"
    return f"hold out the corpus' last {fraction:.0%}, at most {count} tokens"


_HELD_OUT = _held_out()
"""What happens without --valid, in the words of --valid's help."""


def _dropout_help() -> str:
    from rnnlm_cli.train.regularization_fit import DROPOUT_BY_EPOCHS

    (few, none), (many, most) = DROPOUT_BY_EPOCHS[0], DROPOUT_BY_EPOCHS[-1]
    return (f"Dropout on embeddings, between layers and outputs; unset, {none:g} for a run of {few:g} epochs or "
            f"fewer, rising to {most:g} at {many:g} and more")


_DROPOUT_HELP = _dropout_help()
"""--dropout's help, from the table the run fits it by."""


def _cell_help() -> str:
    return with_default(f"Recurrent cell: {', '.join(CELLS)}", ModelConfig, "cell")


def refresh_cell_option(command: Any) -> None:
    """--cell's choices and help from the registry as it is now, so a cell registered after
    this module was imported is listed as well."""
    for param in command.params:
        if param.name == "cell":
            param.metavar, param.help = choices(*CELLS), _cell_help()


def command(
    ctx: typer.Context,
    corpus: Optional[str] = typer.Argument(None, help="Training text (plain or .gz), '-' for stdin, or a token file.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help=with_default("Where the best model goes", JobConfig, "out")),
    valid: Optional[str] = typer.Option(None, metavar="FILE", help=with_default("Validation text or token file", JobConfig, "valid", {None: _HELD_OUT})),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="YAML file of options (names as the flags, - or _)."),
    preset: Optional[str] = typer.Option(None, help="A shipped recipe (listed below); --config and flags override it."),
    tokenizer: Optional[str] = typer.Option(None, metavar=choices(*TOKENIZER_KINDS, "FILE"), help=with_default(
        "word, char, byte, sentencepiece (learned from CORPUS), or a tokenizer JSON / model / token file", TokenizerConfig, "kind")),
    min_count: Optional[int] = typer.Option(None, help=with_default(
        "word/char: entries seen fewer times become <unk>", TokenizerConfig, "min_count")),
    max_size: Optional[int] = typer.Option(None, help=with_default(
        "word/char: largest vocabulary, specials included; 0 = no limit", TokenizerConfig, "max_size")),
    vocab_size: Optional[int] = typer.Option(None, help=with_default("sentencepiece: vocabulary size", TokenizerConfig, "vocab_size")),
    model_type: Optional[str] = typer.Option(None, "--sp-model", metavar=choices(*SP_MODEL_TYPES), help=with_default(
        "sentencepiece: bpe or unigram", TokenizerConfig, "model_type")),
    cell: Optional[str] = typer.Option(None, metavar=choices(*CELLS), help=_cell_help()),
    impl: Optional[str] = typer.Option(None, metavar=choices(*IMPLS), help=with_default(
        "fused (torch kernels) or reference (gate equations)", ModelConfig, "impl")),
    layers: Optional[int] = typer.Option(None, help=fitted_default("Recurrent layers")),
    hidden: Optional[int] = typer.Option(None, help=fitted_default("Hidden units per layer")),
    emb: Optional[int] = typer.Option(None, help=fitted_default("Embedding size")),
    dropout: Optional[float] = typer.Option(None, help=fitted_default(
        _DROPOUT_HELP, FITTED_TO_EPOCHS)),
    tied: Optional[bool] = switch(None, "--tied/--untied", help=with_default(
        "Tie input and output embeddings", ModelConfig, "tied", {False: "untied", True: "tied"})),
    dropout_emb: Optional[float] = typer.Option(None, help=with_default(
        "Embedding dropout: drop whole words (rows of the embedding matrix)", ModelConfig, "dropout_emb")),
    dropout_input: Optional[float] = typer.Option(None, help=with_default(
        "Dropout on the embeddings fed to the first layer; -1 = --dropout", ModelConfig, "dropout_input")),
    dropout_hidden: Optional[float] = typer.Option(None, help=with_default(
        "Dropout between recurrent layers; -1 = --dropout", ModelConfig, "dropout_hidden")),
    dropout_output: Optional[float] = typer.Option(None, help=with_default(
        "Dropout on the last layer's output, before the softmax; -1 = --dropout", ModelConfig, "dropout_output")),
    locked_dropout: Optional[bool] = switch(None, "--locked-dropout", help="Variational dropout: one mask per sequence, shared by all time steps."),
    weight_drop: Optional[float] = typer.Option(None, help=with_default(
        "DropConnect on the hidden-to-hidden matrices", ModelConfig, "weight_drop")),
    attention: Optional[int] = typer.Option(None, help=with_default(
        "Causal attention over the last N hidden states before the softmax; 0 = off", ModelConfig, "attention")),
    mogrifier_rounds: Optional[int] = typer.Option(None, help=with_default(
        "mogrifier cell: rounds of mutual gating of input and state", ModelConfig, "mogrifier_rounds")),
    adaptive_softmax: Optional[str] = typer.Option(None, help=with_default(
        "Adaptive softmax cutoffs: rarer tokens behind cheaper clusters. Token counts (2000,10000), shares "
        "of the vocabulary (3%,15%,45%), auto (from the training tokens' frequencies; the full softmax for "
        "a vocabulary under 4,000 or a --tied model) or '' (the full softmax)",
        ModelConfig, "adaptive_softmax", {"": "full softmax"})),
    adaptive_div: Optional[float] = typer.Option(None, help=with_default(
        "Adaptive softmax: each tail cluster's projection is this many times narrower than the one before "
        "(torch's default and rnnlm 0.2's: 4)", ModelConfig, "adaptive_div")),
    optimizer: Optional[str] = typer.Option(None, metavar=choices(*OPTIMIZERS), help=with_default(
        "sgd, adam or adamw", TrainConfig, "optimizer")),
    lr: Optional[float] = typer.Option(None, help=fitted_default(
        "Learning rate; unset with Adam, chosen with the shape (0.008 for a CPU's 1x256 word model), else 0.002")),
    weight_decay: Optional[float] = typer.Option(None, help=with_default("L2 weight decay", TrainConfig, "weight_decay")),
    l1: Optional[float] = typer.Option(None, help=with_default(
        "L1 penalty on the weights (not biases), added to the loss", TrainConfig, "l1")),
    ar: Optional[float] = typer.Option(None, help=with_default(
        "Activation regularisation: times the mean square of the dropped last-layer output", TrainConfig, "ar")),
    tar: Optional[float] = typer.Option(None, help=with_default(
        "Temporal activation regularisation: times the mean square of h_t - h_(t-1)", TrainConfig, "tar")),
    schedule: Optional[str] = typer.Option(None, metavar=choices(*SCHEDULES), help=with_default(
        "Learning-rate schedule: constant, plateau (divide by --lr-decay when validation stalls) or cosine", TrainConfig, "schedule")),
    lr_decay: Optional[float] = typer.Option(None, help=with_default(
        "plateau: the factor the learning rate is divided by", TrainConfig, "lr_decay")),
    warmup_steps: Optional[int] = typer.Option(None, help=with_default(
        "Linear warm-up from 0 over this many steps, before the schedule", TrainConfig, "warmup_steps")),
    min_lr: Optional[float] = typer.Option(None, help=with_default(
        "cosine: the final learning rate; plateau: stop when the rate falls below it", TrainConfig, "min_lr")),
    asgd: Optional[bool] = switch(None, "--asgd", help="NT-ASGD (with --optimizer sgd): average the weights once validation stalls for --nonmono checks."),
    nonmono: Optional[int] = typer.Option(None, help=with_default(
        "NT-ASGD: validations without improvement before averaging starts", TrainConfig, "nonmono")),
    patience: Optional[int] = typer.Option(None, help=with_default(
        "Stop after this many validations without improvement; 0 = never", TrainConfig, "patience")),
    random_bptt: Optional[bool] = switch(None, "--random-bptt", help="Random segment length around --bptt per step, learning rate scaled by length."),
    embeddings: Optional[str] = typer.Option(None, metavar="FILE", help=with_default(
        "word2vec/GloVe text file to initialise the input embeddings from", TrainConfig, "embeddings")),
    freeze_embeddings: Optional[bool] = switch(None, "--freeze-embeddings", help="Keep the --embeddings vectors fixed (needs --untied)."),
    synonyms: Optional[str] = typer.Option(None, metavar="FILE", help=with_default(
        "File of word pairs, one pair a line, whose embeddings are pulled together", TrainConfig, "synonyms")),
    synonym_weight: Optional[float] = typer.Option(None, help=with_default(
        "Weight of the synonym loss (mean squared distance of the pairs' embeddings)", TrainConfig, "synonym_weight")),
    amp: Optional[str] = typer.Option(None, metavar=choices(*AMP_MODES), help=with_default(
        "Mixed precision: auto (bf16 autocast on CUDA or a CPU with AMX), bf16, or off", TrainConfig, "amp")),
    clip: Optional[float] = typer.Option(None, help=with_default("Clip the total gradient norm; 0 = off", TrainConfig, "clip")),
    batch_size: Optional[int] = typer.Option(None, help=fitted_default("Parallel streams")),
    bptt: Optional[int] = typer.Option(None, help=with_default("Tokens per truncated-BPTT segment", TrainConfig, "bptt")),
    epochs: Optional[int] = typer.Option(None, help=with_default("Passes over the corpus", TrainConfig, "epochs")),
    max_steps: Optional[int] = typer.Option(None, help=with_default("Stop after this many steps; 0 = no limit", TrainConfig, "max_steps")),
    max_time: Optional[float] = typer.Option(None, help=with_default(
        "Stop after this many seconds of training, then validate (reading the data and the final "
        "validation come on top; see --max-wall-time); 0 = no limit", TrainConfig, "max_time")),
    max_wall_time: Optional[float] = typer.Option(None, help=with_default(
        "Bound the whole command's wall time: reading the data, training, the final validation and "
        "save; training stops early enough for what follows it; 0 = no limit", TrainConfig, "max_wall_time")),
    seed: Optional[int] = typer.Option(None, help=with_default("Random seed", TrainConfig, "seed")),
    device: Optional[str] = typer.Option(None, metavar=choices("auto", "cpu", "cuda", "cuda:N", "mps"), help=with_default(
        "auto, cpu, cuda, cuda:N or mps", TrainConfig, "device")),
    log_interval: Optional[int] = typer.Option(None, help=with_default("Steps between log lines", TrainConfig, "log_interval")),
    strict: Optional[bool] = switch(None, "--strict", help="Refuse invalid UTF-8 instead of replacing it."),
    resume: Optional[str] = typer.Option(None, metavar="FILE|auto", help="Continue a stopped run from its <stem>.last.pt, or 'auto': that file beside --out if it exists."),
    init_from: Optional[str] = typer.Option(None, metavar="FILE", help="Start from this model's tokenizer, shape and weights (retraining on new text)."),
    promote_if_better: Optional[str] = typer.Option(None, metavar="FILE", help="After training, replace this model file only if the new model validates better (else exit 3)."),
    deterministic: Optional[bool] = switch(None, "--deterministic", help="Deterministic kernels and seeds: the same run gives the same bits."),
    max_bad_steps: Optional[int] = typer.Option(None, help=with_default(
        "Stop after this many non-finite steps in a row", TrainConfig, "max_bad_steps")),
    keep_checkpoints: Optional[int] = typer.Option(None, help=with_default(
        "Keep the model of each validation as <stem>.step<N>.pt, the last N (the best always stays)", TrainConfig, "keep_checkpoints")),
    max_params: Optional[int] = typer.Option(None, help=with_default(
        "Refuse to build or load a model of more parameters than this; 0 = sized to this machine's memory", TrainConfig, "max_params")),
    plot: Optional[bool] = switch(None, "--plot", help="Draw the learning curves into <stem>.curve.png at the end (needs the plot extra)."),
    json_output: bool = switch(False, "--json", help="Print the result as one JSON object."),
    show_config: bool = switch(False, "--show-config", help=(
        "Print the options as resolved (defaults < preset < --config < flags) as a --config YAML file, "
        "then exit; CORPUS may be left out, nothing is read or written.")),
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
    flags["out"] = str(out) if out is not None else None
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
