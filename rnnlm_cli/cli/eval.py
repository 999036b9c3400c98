"""rnnlm eval: perplexity in SRILM's format, per-word debug output, queries, n-best rescoring, minimal pairs."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Optional

import typer

from rnnlm_cli.cli.field_flags import FieldFlag, field_flags, field_help
from rnnlm_cli.cli.options import choices, default_of, render
from rnnlm_cli.cli.ui import Progress, print_json, warn
from rnnlm_cli.score.ngram_models import BACKENDS as NGRAM_BACKENDS
from rnnlm_cli.score.eval_request import EvalRequest
from rnnlm_cli.score.scoring_config import (CARRY_STATES, CONTEXTS, DYNAMIC_RULES, DYNAMIC_WEIGHTS, NBEST_FORMATS,
                                            NBEST_OUTPUTS, QUERY_FORMATS, TUNE_POINTS, NBestConfig, ScoringConfig)

NAME = "eval"
SUMMARY = "Score text: SRILM-style perplexity, per-word scores, queries, n-best rescoring, minimal pairs."
HELP = (
    "Score FILE (text, .gz text, a token file 'rnnlm tokenize' or 'train' wrote with the model's "
    "tokenizer, or '-' for stdin) with MODEL. Prints SRILM's two lines "
    "(log10 logprob, ppl over words + sentences, ppl1 over words; OOV words excluded unless --unk), "
    "more with --debug 1 (per sentence) or 2 (per word), one JSON object with --json, or one log10 "
    "score per input line with --per-sentence. --query answers each line as soon as it is read "
    "(a coprocess, like KenLM's query). --nbest rescores n-best lists (SRILM or Kaldi layout), or with --output "
    "sentence-scores|token-scores prints what Kaldi's rescoring scripts read: log10 scores per hypothesis, "
    "costs (-ln P) per word. "
    "--pairs reports how often the model prefers the grammatical sentence of minimal pairs (accuracy "
    "overall, per category and per distance). "
    "--tune chooses the n-best weights by WER against --references; --backward-model adds a model trained with "
    "--reverse (which reads each line right to left by itself). "
    "--mix-lm interpolates per word with an ARPA n-gram model; --cache and --dynamic adapt to the "
    "text while scoring it. By default the hidden state carries across lines (continuous-stream perplexity)."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm eval runs/sample/model.pt sample_data/test.txt --debug 2\n\n"
    "  cat test.txt | rnnlm eval model.pt - --json --cache 2000 --dynamic\n\n"
    "  rnnlm eval model.pt test.txt --mix-lm 3gram.arpa --fit-lambda valid.txt\n\n"
    "  rnnlm eval model.pt --nbest hyps.nbest --lm-weight 12 --nbest-sort > rescored.txt\n\n"
    "  rnnlm eval model.pt --nbest text.ids --nbest-format kaldi --symbols words.txt --output token-scores\n\n"
    "  rnnlm eval model.pt --nbest dev.nbest --nbest-acoustic dev.cost --references dev.text --tune "
    "--backward-model back.pt\n\n"
    "  rnnlm eval runs/sample/model.pt --pairs sample_data/pairs.tsv --json"
)


_request = partial(FieldFlag, EvalRequest)
"""A flag backed by a field of that class."""


def _shown(owner: type, name: str) -> str:
    """The default of ``owner.name`` as the help shows it: what an option left unset scores with."""
    return render(default_of(owner, name))


# Every option of the command, in the order --help lists them, each a field of EvalRequest (which
# holds them by these names; its docstrings are the help). Options that only tune a part of the
# scoring show the default of the configuration that part is built with.
ORDER = (
    "ctx", "model", "file",
    _request("context", metavar=choices(*CONTEXTS),
             shown_default=f"{_shown(ScoringConfig, 'context')}; sentence with --query"),
    _request("debug"), _request("json_output", decls=("--json",)), _request("per_sentence"), _request("query"),
    _request("query_format", decls=("--format",), metavar=choices(*QUERY_FORMATS)),
    _request("unk"), _request("mix_lm", metavar="FILE"),
    _request("mix_lm_backend", metavar=choices(*NGRAM_BACKENDS)),
    _request("mix_lambda", decls=("--lambda",), shown_default=_shown(ScoringConfig, "mix_weight")),
    _request("fit_lambda", metavar="FILE"),
    _request("cache"), _request("cache_theta", shown_default=_shown(ScoringConfig, "cache_theta")),
    _request("cache_lambda", shown_default=_shown(ScoringConfig, "cache_lambda")),
    _request("dynamic"), _request("dynamic_rule", metavar=choices(*DYNAMIC_RULES),
                                  shown_default=_shown(ScoringConfig, "dynamic_rule")),
    _request("dynamic_weights", metavar=choices(*DYNAMIC_WEIGHTS), shown_default=_shown(ScoringConfig, "dynamic_weights")),
    _request("dynamic_lr", shown_default="fitted to the model"),
    *(_request(name, shown_default=_shown(ScoringConfig, name)) for name in ("dynamic_decay", "dynamic_segment")),
    _request("nbest", metavar="FILE"),
    _request("nbest_format", metavar=choices(*NBEST_FORMATS), shown_default=_shown(NBestConfig, "format")),
    _request("nbest_acoustic", metavar="FILE"),
    _request("lm_weight", shown_default=_shown(ScoringConfig, "lm_weight")),
    _request("word_penalty", shown_default=_shown(ScoringConfig, "word_penalty")),
    _request("nbest_sort"), _request("nbest_best"),
    _request("nbest_output", decls=("--output",), metavar=choices(*NBEST_OUTPUTS),
             shown_default=_shown(NBestConfig, "output")),
    _request("nbest_cost", decls=("--cost",)), _request("symbols", metavar="FILE"),
    _request("carry_state", metavar=choices(*CARRY_STATES), shown_default=_shown(NBestConfig, "carry_state")),
    _request("backward_model", metavar="FILE"),
    _request("backward_weight", shown_default=f"{_shown(ScoringConfig, 'backward_weight')}; searched with --tune"),
    _request("tune"), _request("references", metavar="FILE"),
    _request("tune_lm_weights", metavar="LO:HI", shown_default="from the lists"),
    _request("tune_word_penalties", metavar="LO:HI", shown_default="from the lists"),
    _request("tune_points", shown_default=str(TUNE_POINTS)), _request("plot", metavar="FILE"),
    _request("pairs", metavar="FILE"), _request("device"), _request("amp"), _request("strict"),
    _request("config", metavar="FILE"),
)


@field_flags(*ORDER)
def command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help=field_help(EvalRequest, "model") + ".", show_default=False),
    file: Optional[str] = typer.Argument(None, help=field_help(EvalRequest, "file") + ".", show_default=False),
    **options: Any,
) -> None:
    from rnnlm_cli.files.roles import FileRole, check_one_stdin, check_stdout_apart
    from rnnlm_cli.text.reading import check_readable

    # A --config read from stdin leaves nothing there for FILE or --nbest: refused before it is read.
    check_one_stdin([FileRole(name, path) for name, path in EvalRequest.named_inputs(ctx.params)])
    request = EvalRequest.resolve(ctx.params)  # an option not given is None: the file's, else the default
    for name, path in request.inputs():
        if name != "MODEL":  # the model is checked as it is loaded, after the inputs
            check_readable(path)
    check_stdout_apart([FileRole(name, path) for name, path in request.inputs()])
    _run(request)


def _run(request) -> None:
    """Load the model and do what ``request`` asks."""
    from rnnlm_cli.device import resolve_device
    from rnnlm_cli.store.checkpoint import load_model

    target, strict = resolve_device(request.device), request.strict
    lm, tokenizer, _ = load_model(request.model, target)
    request.check_tokenizer(tokenizer)
    ngram = _load_ngram(request.mix_lm, request.mix_lm_backend)
    config = request.scoring
    if request.fit_lambda is not None:
        config = _fit(lm, tokenizer, request.fit_lambda, target, config, ngram, strict,
                      report_to_stdout=request.fit_report_to_stdout)
    if request.mode == "tune":
        _tune(lm, tokenizer, request, target, config, ngram)
    elif request.mode == "pairs":
        _judge_pairs(lm, tokenizer, request.pairs, target, config, ngram, strict, json_output=request.json_output)
    elif request.mode in ("lists", "rescore"):
        _nbest(lm, tokenizer, request.nbest, target, config, request.lists, ngram, strict,
               best_only=request.nbest_best, kaldi=request.mode == "lists",
               backward=_backward(request.backward_model, target))
    elif request.mode == "text":
        _score(lm, tokenizer, request, target, config, ngram)


def _load_ngram(path: str | None, backend: str):
    if path is None:
        return None
    from rnnlm_cli.cli.ui import log
    from rnnlm_cli.score.ngram_models import KenlmModel, load_ngram

    ngram = load_ngram(path, backend, note=warn)
    reader = "KenLM" if isinstance(ngram, KenlmModel) else "the ARPA reader"
    log(f"mixing with {path}: an order-{ngram.order} n-gram model, read by {reader}")
    return ngram


def _fit(lm, tokenizer, dev: str, device, config, ngram, strict: bool, report_to_stdout: bool):
    import dataclasses

    from rnnlm_cli.cli.ui import log
    from rnnlm_cli.score.formats import fit_lines
    from rnnlm_cli.score.evaluate import fit_mix_weight

    fit = fit_mix_weight(lm, tokenizer, dev, device, config, ngram, strict=strict)
    for line in fit_lines(dev, fit):
        print(line) if report_to_stdout else log(line)
    return dataclasses.replace(config, mix_weight=fit.weight)


def _score(lm, tokenizer, request, device, config, ngram) -> None:
    from rnnlm_cli.cli.ui import log
    from rnnlm_cli.score.evaluate import evaluate_file
    from rnnlm_cli.score.formats import vocabulary_ids
    from rnnlm_cli.score.text_outputs import TEXT_OUTPUTS

    output = TEXT_OUTPUTS[request.text_output](sys.stdout, vocabulary_ids(tokenizer) if request.kenlm else None)
    with Progress("scoring") as progress:
        output.progress = progress
        result = evaluate_file(lm, tokenizer, request.file, device, config, ngram=ngram, strict=request.strict,
                               eager=request.query, skip_blank_lines=output.skips_blank_lines,
                               on_words=output.on_words if output.wants_words else None,
                               on_sentence=output.on_sentence)
    for note in result.warnings():
        warn(note)
    if result.adaptation is not None:
        log(result.adaptation.line)
    summary = output.summary(result, request.file)
    if summary.stdout:
        print("\n".join(summary.stdout))
    if summary.log:
        log("\n".join(summary.log))
    sys.stdout.flush()  # the results are out (or their failure is the one error line) before notes on them
    if result.tokens:
        # SRILM's lines are per word; the model predicts tokens. Both, never mixed.
        unit = "character" if tokenizer.kind in ("char", "byte") else "token"
        log(f"{result.shown_name}: per {unit}: {result.tokens:,} {unit}s predicted (line ends included), "
            f"ppl {result.token_ppl:.2f}, {result.bits_per_token:.3f} bits per {unit}")
    if tokenizer.kind in ("sentencepiece", "char") and result.encoded_tokens:
        rate = (result.unk_tokens + result.byte_tokens) / result.encoded_tokens
        log(f"{result.shown_name}: {result.unk_tokens} <unk> and {result.byte_tokens} byte-fallback tokens of "
            f"{result.encoded_tokens} ({rate:.2%})")


def _tune(lm, tokenizer, request, device, config, ngram) -> None:
    from rnnlm_cli.files.roles import FileRole, check_file_roles, check_output_file
    from rnnlm_cli.score.tuning import tune
    from rnnlm_cli.score.tuning_data import ModelPair, score_lists
    from rnnlm_cli.score.tuning_report import plot_tuning, require_matplotlib, tuning_dict, tuning_lines
    from rnnlm_cli.text.reading import display_name

    if request.plot is not None:
        require_matplotlib()
        check_output_file(request.plot, "--plot")
        check_file_roles([FileRole(name, path) for name, path in request.inputs()]
                         + [FileRole("--plot", request.plot, writes=True)])
    backward = _backward(request.backward_model, device)
    notes: list[str] = []
    with Progress("scoring hypotheses") as progress:
        lists = score_lists(ModelPair(lm, tokenizer), request.nbest, request.references, device, config, request.lists,
                            ngram=ngram, backward=backward, strict=request.strict, on_progress=progress.update,
                            warnings=notes)
    result = tune(lists, request.tuning)
    name = display_name(request.nbest)
    if request.json_output:
        print_json(tuning_dict(result, name))
    else:
        print("\n".join(tuning_lines(result, name)))
    sys.stdout.flush()  # the results are out before notes on them
    if request.plot is not None:
        plot_tuning(result, request.plot, title=f"WER on {name}")
    for note in notes + result.notes:
        warn(note)


def _backward(path: str | None, device):
    """The model of --backward-model; one trained left to right is used too, as a second forward model, with a warning."""
    if path is None:
        return None
    from rnnlm_cli.score.tuning_data import ModelPair
    from rnnlm_cli.store.checkpoint import load_model

    model, tokenizer, _ = load_model(path, device)
    if not tokenizer.reverse:
        warn(f"--backward-model {path} reads left to right (trained without --reverse): it is combined as a second "
             "forward model")
    return ModelPair(model, tokenizer)


def _judge_pairs(lm, tokenizer, path: str, device, config, ngram, strict: bool, *, json_output: bool) -> None:
    from rnnlm_cli.score.formats import pairs_lines
    from rnnlm_cli.score.pairs import evaluate_pairs

    with Progress("scoring pairs") as progress:
        result = evaluate_pairs(lm, tokenizer, path, device, config, ngram=ngram, strict=strict,
                                on_progress=progress.update)
    if json_output:
        print_json(result.to_dict())
    else:
        print("\n".join(pairs_lines(result)))
    sys.stdout.flush()  # the results are out before notes on them
    for note in result.warnings():
        warn(note)


def _nbest(lm, tokenizer, path: str, device, config, lists, ngram, strict: bool, *, best_only: bool,
           kaldi: bool, backward=None) -> None:
    """Score the n-best lists at ``path`` (``kaldi``: through Kaldi's routes) and write each as it is done."""
    from rnnlm_cli.score.nbest_outputs import list_writer

    if kaldi:
        from rnnlm_cli.score.kaldi import score_nbest_lists as score_lists
    else:
        from rnnlm_cli.score.rescoring import rescore_nbest as score_lists
    write = list_writer(sys.stdout, lists, best_only)
    with Progress("scoring n-best lists" if kaldi else "rescoring") as progress:
        def written(count: int, nbest_list, rows) -> None:
            write(nbest_list, rows)
            progress.update(count)

        result = score_lists(lm, tokenizer, path, device, config, lists, ngram=ngram, strict=strict, on_list=written,
                             backward=None if backward is None else (backward.model, backward.tokenizer))
    sys.stdout.flush()
    for note in result.warnings:
        warn(note)
