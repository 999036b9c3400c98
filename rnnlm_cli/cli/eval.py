"""rnnlm eval: perplexity in SRILM's format, per-word debug output, queries, n-best rescoring, minimal pairs."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from rnnlm_cli.cli.options import choices, default_of, render, switch, with_default
from rnnlm_cli.cli.ui import Progress, print_json, warn
from rnnlm_cli.score.ngram_models import BACKENDS as NGRAM_BACKENDS
from rnnlm_cli.score.scoring_config import (CARRY_STATES, CONTEXTS, NBEST_FORMATS, NBEST_OUTPUTS, QUERY_FORMATS,
                                            NBestConfig, ScoringConfig)

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
    "  rnnlm eval runs/sample/model.pt --pairs sample_data/pairs.tsv --json"
)


def command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model file written by 'rnnlm train'."),
    file: Optional[str] = typer.Argument(None, help="Text to score (plain or .gz), a token file, or '-' for stdin."),
    context: Optional[str] = typer.Option(
        None, metavar=choices(*CONTEXTS), help="stream: state carries across lines; sentence: each line alone "
                   f"\\[default: {render(default_of(ScoringConfig, 'context'))}; sentence with --query]."),
    debug: int = typer.Option(0, help="SRILM's detail: 0 totals, 1 adds each sentence, 2 adds each word."),
    json_output: bool = switch(False, "--json", help="Print one JSON object of the totals."),
    per_sentence: bool = switch(False, "--per-sentence", help="Print one log10 score per input line, in order."),
    query: bool = switch(False, "--query", help="Answer each line as soon as it is read: its words' log10 "
                               "scores and total (one score with --per-sentence); totals go to stderr."),
    query_format: str = typer.Option("srilm", "--format", metavar=choices(*QUERY_FORMATS), help=(
        "--query's layout: srilm (word=log10 fields, totals on stderr) or kenlm (KenLM's word=ID ORDER log10, "
        "OOVs as <unk> with id 0, its perplexity summary on stdout).")),
    unk: bool = switch(ScoringConfig.unk, "--unk", help="Score OOV words as <unk> instead of leaving them out."),
    mix_lm: Optional[str] = typer.Option(None, "--mix-lm", metavar="FILE", help="N-gram model to mix with, per word: ARPA (plain "
                                         "or .gz), or a KenLM binary file (with the kenlm extra)."),
    mix_lm_backend: str = typer.Option("auto", "--mix-lm-backend", metavar=choices(*NGRAM_BACKENDS), help=(
        "Who reads --mix-lm: kenlm (the kenlm module: less memory, fast loading), python (the built-in ARPA "
        "reader), or auto (kenlm when installed).")),
    mix_lambda: Optional[float] = typer.Option(None, "--lambda", help=with_default(
        "With --mix-lm: the neural model's weight in the mix", ScoringConfig, "mix_weight")),
    fit_lambda: Optional[str] = typer.Option(None, "--fit-lambda",
                                             metavar="FILE", help="With --mix-lm: find the best --lambda on this text first (EM)."),
    cache: int = typer.Option(ScoringConfig.cache,
                              help="Neural cache over the last N positions (Grave et al.); 0 = off."),
    cache_theta: Optional[float] = typer.Option(None, help=with_default(
        "Cache: inverse temperature of the feature dot products", ScoringConfig, "cache_theta")),
    cache_lambda: Optional[float] = typer.Option(None, help=with_default(
        "Cache: its weight in the mix with the model", ScoringConfig, "cache_lambda")),
    dynamic: bool = switch(ScoringConfig.dynamic, "--dynamic", help="Dynamic evaluation (Krause et al.): after "
                                 "scoring each segment, one SGD step on it; never before."),
    dynamic_lr: Optional[float] = typer.Option(None, help=with_default(
        "Dynamic evaluation: learning rate", ScoringConfig, "dynamic_lr")),
    dynamic_decay: Optional[float] = typer.Option(None, help=with_default(
        "Dynamic evaluation: per-step pull back to the trained weights", ScoringConfig, "dynamic_decay")),
    dynamic_segment: Optional[int] = typer.Option(None, help=with_default(
        "Dynamic evaluation: tokens per step", ScoringConfig, "dynamic_segment")),
    nbest: Optional[str] = typer.Option(None, "--nbest", metavar="FILE", help="Rescore this n-best list file ('-' for stdin)."),
    nbest_format: Optional[str] = typer.Option(None, metavar=choices(*NBEST_FORMATS), help=with_default(
        "n-best layout: auto, srilm or kaldi", NBestConfig, "format")),
    nbest_acoustic: Optional[str] = typer.Option(None, metavar="FILE", help="kaldi: table of 'KEY cost' acoustic costs (natural log)."),
    lm_weight: Optional[float] = typer.Option(None, help=with_default(
        "n-best: total = acoustic + lm-weight * lm + word-penalty * words", ScoringConfig, "lm_weight")),
    word_penalty: Optional[float] = typer.Option(None, help=with_default(
        "n-best: log10 score added per word", ScoringConfig, "word_penalty")),
    nbest_sort: bool = switch(NBestConfig.sort, "--nbest-sort",
                                    help="n-best: order each list by total, best first."),
    nbest_best: bool = switch(False, "--nbest-best", help="n-best: print only each utterance's best, 'UTT words'."),
    nbest_output: Optional[str] = typer.Option(None, "--output", metavar=choices(*NBEST_OUTPUTS), help=with_default(
        "n-best: rescored ('KEY TOTAL ACOUSTIC LM NWORDS words'); sentence-scores (one log10 probability per "
        "hypothesis, in input order, as Mikolov's rnnlm -nbest; higher is better); token-scores ('KEY c1 ... cN "
        "cEOS', each word's and the sentence end's cost = -ln P, 4 decimals)", NBestConfig, "output")),
    nbest_cost: bool = switch(NBestConfig.cost, "--cost", help="sentence-scores: print Kaldi's 'KEY cost' instead, "
                              "cost = -ln P = -log10 P * ln 10 (lower is better)."),
    symbols: Optional[str] = typer.Option(None, "--symbols", metavar="FILE", help="n-best: Kaldi symbol table ('word id' lines); "
                                          "the hypotheses are integer ids, <eps>, <s>, </s> and #N are dropped."),
    carry_state: Optional[str] = typer.Option(None, metavar=choices(*CARRY_STATES), help=with_default(
        "n-best: best starts each utterance from the state after the previous utterance's best hypothesis "
        "(highest total when the list has acoustic scores, else rank 1); input order is one conversation, "
        "never reset", NBestConfig, "carry_state")),
    pairs: Optional[str] = typer.Option(None, "--pairs", metavar="FILE", help=(
        "Minimal pairs to judge (plain or .gz, '-' for stdin), per line 'good<TAB>bad[<TAB>category[<TAB>distance]]'; "
        "'#' lines are skipped. Each sentence is scored alone (as --context sentence), OOV words as <unk>; a pair "
        "is right when the good sentence scores strictly higher (a tie is wrong). Prints accuracy overall, per "
        "category and per distance bucket (1, 2, 3-4, 5-8, ...).")),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    amp: str = typer.Option(ScoringConfig.amp, help="Matrix products in float32 (off), bf16, or auto (bf16 on CUDA or "
                            "a CPU with AMX): bf16 scores several times faster there, a little less exactly."),
    strict: bool = switch(False, "--strict", help="Refuse invalid UTF-8 instead of replacing it."),
    config: Optional[str] = typer.Option(None, "--config", metavar="FILE", help=(
        "YAML file of options (names as the flags, - or _; not MODEL or FILE); flags given override it.")),
) -> None:
    from rnnlm_cli.files.roles import FileRole, check_one_stdin, check_stdout_apart
    from rnnlm_cli.score.eval_request import EvalRequest
    from rnnlm_cli.text.reading import check_readable

    params = {name: value for name, value in ctx.params.items() if name != "config"}
    # A --config read from stdin leaves nothing there for FILE or --nbest: refused before it is read.
    check_one_stdin([FileRole("--config", config or ""), *(FileRole(name, path) for name, path in
                                                          EvalRequest.named_inputs(params))])
    # What the user typed wins over --config, which wins over the defaults.
    # (By the source's name: typer may carry its own copy of click and of its enum.)
    given = {name for name in params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    request = EvalRequest.resolve(params, given, config)
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
    if request.mode == "pairs":
        _judge_pairs(lm, tokenizer, request.pairs, target, config, ngram, strict, json_output=request.json_output)
    elif request.mode in ("lists", "rescore"):
        _nbest(lm, tokenizer, request.nbest, target, config, request.lists, ngram, strict,
               best_only=request.nbest_best, kaldi=request.mode == "lists")
    elif request.mode == "text":
        _score(lm, tokenizer, request.file, target, config, ngram, strict, debug=request.debug,
               json_output=request.json_output, per_sentence=request.per_sentence, query=request.query,
               kenlm=request.kenlm)


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


def _score(lm, tokenizer, file: str, device, config, ngram, strict: bool, *, debug: int, json_output: bool,
           per_sentence: bool, query: bool, kenlm: bool = False) -> None:
    from rnnlm_cli.cli.ui import log
    from rnnlm_cli.score.evaluate import evaluate_file
    from rnnlm_cli.score.formats import LineRenderer, totals_lines, vocabulary_ids

    render = LineRenderer(sys.stdout, debug=debug, per_sentence=per_sentence, query=query,
                          kenlm_ids=vocabulary_ids(tokenizer) if kenlm else None)
    with Progress("scoring") as progress:
        render.progress = progress
        result = evaluate_file(lm, tokenizer, file, device, config, ngram=ngram, strict=strict, eager=query,
                               on_words=render.on_words if render.wants_words else None,
                               on_sentence=render.on_sentence)
    for note in result.warnings():
        warn(note)
    if query or per_sentence:
        if render.kenlm is not None:
            print("\n".join(render.kenlm.summary()))  # KenLM's query ends with these, on stdout
        elif query:
            log("\n".join(totals_lines(result, name=file)))
    elif json_output:
        print_json(result.to_dict())
    else:
        print("\n".join(totals_lines(result, name=file)))
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
           kaldi: bool) -> None:
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

        result = score_lists(lm, tokenizer, path, device, config, lists, ngram=ngram, strict=strict, on_list=written)
    sys.stdout.flush()
    for note in result.warnings:
        warn(note)
