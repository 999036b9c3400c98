"""One ``rnnlm eval`` call as the user gave it, checked as a whole.

``eval`` does five things (score a text, answer queries, rescore n-best lists, judge minimal
pairs, fit a mixture weight) through one set of options, and most options mean something
for only some of them. :class:`EvalRequest` holds the options by the flags' names, refuses
the combinations that cannot mean anything (exit 2, before any file is read), and gives
the scoring and n-best configurations and which of the five jobs the call asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Mapping

from rnnlm_cli.config import check_values, load_yaml
from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.scoring_config import DEBUG_LEVELS, QUERY_FORMATS, NBestConfig, ScoringConfig

MODES = ("pairs", "tune", "lists", "rescore", "text", "fit")
"""What a call does: judge minimal pairs, tune n-best weights by WER, score n-best lists for Kaldi
(or with a carried state or symbol ids), rescore SRILM-style, score a text, or only fit the
mixture weight."""


FLAGS = {"model": "MODEL", "file": "FILE", "json_output": "--json", "query_format": "--format",
         "mix_lambda": "--lambda", "nbest_output": "--output", "nbest_cost": "--cost"}
"""Fields whose flag (or argument) is not ``--`` and the field's name with dashes."""
INPUTS = ("model", "file", "config", "nbest", "pairs", "mix_lm", "fit_lambda", "nbest_acoustic", "symbols",
          "backward_model", "references")
"""Fields that name a file the call reads."""
NOT_IN_CONFIG = ("model", "file", "config")
"""Fields a --config file cannot set: what to score is named on the command line."""
MAX_TUNE_POINTS = 201
"""Largest --tune-points: the grid is the square of it, times the mixture and backward weights."""


@dataclass(frozen=True)
class EvalRequest:
    """The options of one ``rnnlm eval`` call (None: not given), named as its parameters."""

    model: str
    """Model file written by 'rnnlm train'."""
    file: str | None = None
    """Text to score (plain or .gz), a token file, or '-' for stdin."""
    context: str | None = None
    """stream: state carries across lines; sentence: each line alone."""
    debug: int = 0
    """SRILM's detail: 0 totals, 1 adds each sentence, 2 adds each word."""
    json_output: bool = False
    """Print one JSON object of the totals."""
    per_sentence: bool = False
    """Print one log10 score per input line, in order."""
    query: bool = False
    """Answer each line as soon as it is read: its words' log10 scores and total (one score with
    --per-sentence); totals go to stderr."""
    query_format: str = "srilm"
    """--query's layout: srilm (word=log10 fields, totals on stderr) or kenlm (KenLM's word=ID ORDER
    log10, OOVs as <unk> with id 0, its perplexity summary on stdout)."""
    unk: bool = False
    """Score OOV words as <unk> instead of leaving them out."""
    mix_lm: str | None = None
    """N-gram model to mix with, per word: ARPA (plain or .gz), or a KenLM binary file (with the kenlm extra)."""
    mix_lm_backend: str = "auto"
    """Who reads --mix-lm: kenlm (the kenlm module: less memory, fast loading), python (the built-in
    ARPA reader), or auto (kenlm when installed)."""
    mix_lambda: float | None = None
    """With --mix-lm: the neural model's weight in the mix."""
    fit_lambda: str | None = None
    """With --mix-lm: find the best --lambda on this text first (EM)."""
    cache: int = ScoringConfig.cache
    """Neural cache over the last N positions (Grave et al.); 0 = off."""
    cache_theta: float | None = None
    """Cache: inverse temperature of the feature dot products."""
    cache_lambda: float | None = None
    """Cache: its weight in the mix with the model."""
    dynamic: bool = ScoringConfig.dynamic
    """Dynamic evaluation (Krause et al.): after scoring each segment, one step on it; never before. Its
    rate is fitted on the text's first 4,096 tokens, which are scored without adapting."""
    dynamic_rule: str | None = None
    """Dynamic evaluation: rms (each weight tensor's step divided by its gradient RMS, measured on the text's
    first tokens, and its pull back scaled by it) or sgd."""
    dynamic_weights: str | None = None
    """Dynamic evaluation: adapt the decoder's weights (output: the recurrent layers run forward only, as in
    plain scoring) or all of them (a backward pass through the network every segment)."""
    dynamic_lr: float | None = None
    """Dynamic evaluation: learning rate."""
    dynamic_decay: float | None = None
    """Dynamic evaluation: per-step pull back to the trained weights (with rms, scaled per weight tensor by
    its gradient RMS over the mean)."""
    dynamic_segment: int | None = None
    """Dynamic evaluation: tokens per step; shorter adapts sooner, at a cost in speed."""
    nbest: str | None = None
    """Rescore this n-best list file ('-' for stdin)."""
    nbest_format: str | None = None
    """n-best layout: auto, srilm or kaldi."""
    nbest_acoustic: str | None = None
    """kaldi: table of 'KEY cost' acoustic costs (natural log)."""
    lm_weight: float | None = None
    """n-best: total = acoustic + lm-weight * lm + word-penalty * words."""
    word_penalty: float | None = None
    """n-best: log10 score added per word."""
    nbest_sort: bool = NBestConfig.sort
    """n-best: order each list by total, best first."""
    nbest_best: bool = False
    """n-best: print only each utterance's best, 'UTT words'."""
    nbest_output: str | None = None
    """n-best: rescored ('KEY TOTAL ACOUSTIC LM NWORDS words'); sentence-scores (one log10 probability
    per hypothesis, in input order, as Mikolov's rnnlm -nbest; higher is better); token-scores
    ('KEY c1 ... cN cEOS', each word's and the sentence end's cost = -ln P, 4 decimals)."""
    nbest_cost: bool = NBestConfig.cost
    """sentence-scores: print Kaldi's 'KEY cost' instead, cost = -ln P = -log10 P * ln 10 (lower is better)."""
    symbols: str | None = None
    """n-best: Kaldi symbol table ('word id' lines); the hypotheses are integer ids, <eps>, <s>, </s>
    and #N are dropped."""
    carry_state: str | None = None
    """n-best: best starts each utterance from the state after the previous utterance's best hypothesis
    (highest total when the list has acoustic scores, else rank 1); input order is one conversation,
    never reset."""
    backward_model: str | None = None
    """n-best: a model trained with --reverse; each hypothesis' LM score becomes (1 - b) * forward + b * backward,
    b the --backward-weight (Kaldi's backward-RNNLM rescoring); --output rescored only, each hypothesis from a
    fresh state."""
    backward_weight: float | None = None
    """n-best: the backward model's share b of the LM score."""
    tune: bool = False
    """n-best: choose --lm-weight and --word-penalty (and --lambda with --mix-lm, --backward-weight with
    --backward-model) by the WER against --references; prints the WER table and the flags to rescore with.
    A weight given is held, the others searched."""
    references: str | None = None
    """--tune: reference transcripts, Kaldi's 'UTT w1 ... wN' lines (data/*/text)."""
    tune_lm_weights: str | None = None
    """--tune: the LM weights tried, LO:HI; by default laid out from the lists' acoustic and LM spreads, and
    widened while the best lies on the edge."""
    tune_word_penalties: str | None = None
    """--tune: the word penalties tried, LO:HI; by default laid out around 0 from the LM's cost per word."""
    tune_points: int | None = None
    """--tune: values per axis of the LM weight x word penalty grid (mixture and backward weights: 0, 0.1 ... 1)."""
    plot: str | None = None
    """--tune: draw the WER over the grid into this PNG file (needs the plot extra)."""
    pairs: str | None = None
    """Minimal pairs to judge (plain or .gz, '-' for stdin), per line 'good<TAB>bad[<TAB>category[<TAB>distance]]';
    '#' lines are skipped. Each sentence is scored alone (as --context sentence), OOV words as <unk>; a
    pair is right when the good sentence scores strictly higher (a tie is wrong). Prints accuracy
    overall, per category and per distance bucket (1, 2, 3-4, 5-8, ...)."""
    amp: str = ScoringConfig.amp
    """Matrix products in float32 (off), bf16, or auto (bf16 on CUDA or a CPU with AMX): bf16 scores
    several times faster there, a little less exactly."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    strict: bool = False
    """Refuse invalid UTF-8 instead of replacing it."""
    config: str | None = None
    """YAML file of options (names as the flags, - or _; not MODEL or FILE); flags given override it."""

    @classmethod
    def resolve(cls, options: Mapping[str, Any]) -> "EvalRequest":
        """The request of a call whose options are ``options`` (None: not given on the command
        line): defaults < the ``config`` YAML file they name (options named as the flags, - or _)
        < the options given."""
        values = {name: value for name, value in options.items() if value is not None}
        config = values.get("config")
        if config is not None:
            by_key = {FLAGS.get(name, "--" + name).lstrip("-").replace("-", "_"): name
                      for name in (spec.name for spec in fields(cls)) if name not in NOT_IN_CONFIG}
            from_file = load_yaml(config)
            stray = sorted(set(from_file) - set(by_key))
            if stray:
                raise UsageError(f"{config}: not options of rnnlm eval: {', '.join(stray)}")
            values = {**{by_key[key]: value for key, value in from_file.items()}, **values}
        return cls(**values)

    def __post_init__(self) -> None:
        check_values(self, FLAGS)
        self._check_outputs()
        self._check_inputs()
        _needs(self.mix_lm is not None, "--mix-lm", {
            "--lambda": self.mix_lambda, "--fit-lambda": self.fit_lambda,
            "--mix-lm-backend": None if self.mix_lm_backend == "auto" else self.mix_lm_backend})
        _needs(self.cache > 0, "--cache N", {"--cache-theta": self.cache_theta, "--cache-lambda": self.cache_lambda})
        _needs(self.dynamic, "--dynamic", {"--dynamic-lr": self.dynamic_lr, "--dynamic-rule": self.dynamic_rule,
                                           "--dynamic-weights": self.dynamic_weights,
                                           "--dynamic-decay": self.dynamic_decay,
                                           "--dynamic-segment": self.dynamic_segment})
        _needs(self.nbest is not None, "--nbest", {
            "--nbest-format": self.nbest_format, "--nbest-acoustic": self.nbest_acoustic,
            "--lm-weight": self.lm_weight, "--word-penalty": self.word_penalty,
            "--nbest-sort": self.nbest_sort or None, "--nbest-best": self.nbest_best or None,
            "--output": self.nbest_output, "--cost": self.nbest_cost or None, "--symbols": self.symbols,
            "--carry-state": self.carry_state, "--backward-model": self.backward_model, "--tune": self.tune or None})
        _needs(self.backward_model is not None, "--backward-model", {"--backward-weight": self.backward_weight})
        _needs(self.tune, "--tune", {"--references": self.references, "--tune-lm-weights": self.tune_lm_weights,
                                     "--tune-word-penalties": self.tune_word_penalties,
                                     "--tune-points": self.tune_points, "--plot": self.plot})
        self._check_tuning()
        if self.file is None and self.nbest is None and self.pairs is None and self.fit_lambda is None:
            raise UsageError("missing FILE: the text to score ('-' for stdin)")
        # Both configurations are built (and check their values) now, before any file is read.
        _, lists = self.scoring, self.lists
        if self.nbest_best and lists.output != "rescored":
            raise UsageError(f"--nbest-best prints from --output rescored, not {lists.output}")

    def _check_outputs(self) -> None:
        if self.debug not in DEBUG_LEVELS:
            raise UsageError(f"--debug must be 0, 1 or 2, got {self.debug}")
        # --tune prints a table (or, with --json, its object) in place of the rescored lists.
        outputs = [name for name, on in (("--json", self.json_output), ("--per-sentence", self.per_sentence
                                                                          and not self.query),
                                         ("--debug", self.debug > 0), ("--query", self.query),
                                         ("--nbest", self.nbest is not None and not self.tune)) if on]
        if len(outputs) > 1:
            raise UsageError(f"{' and '.join(outputs)} choose different outputs: pick one")
        if self.query_format not in QUERY_FORMATS:
            raise UsageError(f"--format must be one of {', '.join(QUERY_FORMATS)}, got {self.query_format!r}")
        if self.kenlm and (not self.query or self.per_sentence):
            raise UsageError("--format kenlm is a layout of --query's per-word answers: give --query "
                             "(without --per-sentence)")

    def _check_tuning(self) -> None:
        if not self.tune:
            if self.backward_model is not None and (self.lists.output != "rescored" or self.lists.carry_state != "none"):
                raise UsageError("--backward-model combines sentence scores into --output rescored, each hypothesis "
                                 "from a fresh state: not with --carry-state best or other outputs (score the backward "
                                 "model alone for those)")
            return
        if self.references is None:
            raise UsageError("--tune needs --references: the transcripts the WER is counted against")
        clash = [name for name, on in (("--per-sentence", self.per_sentence), ("--debug", self.debug > 0),
                                       ("--query", self.query),
                                       ("--output", self.nbest_output is not None), ("--nbest-sort", self.nbest_sort),
                                       ("--nbest-best", self.nbest_best), ("--carry-state", self.carry_state is not None),
                                       ("--fit-lambda", self.fit_lambda is not None)) if on]
        if clash:
            raise UsageError(f"--tune prints the WER of each choice of weights, not lists: {' and '.join(clash)} "
                             f"{'does' if len(clash) == 1 else 'do'} not go with it")
        for held, span, flags in ((self.lm_weight, self.tune_lm_weights, "--lm-weight and --tune-lm-weights"),
                                  (self.word_penalty, self.tune_word_penalties,
                                   "--word-penalty and --tune-word-penalties")):
            if held is not None and span is not None:
                raise UsageError(f"{flags}: a weight given is held, a range is searched; give one")
        _ = self.tuning  # the ranges and the grid size are checked now, before any file is read

    @cached_property
    def tuning(self):
        """What --tune searches (:class:`rnnlm_cli.score.tuning.TuneRequest`)."""
        from rnnlm_cli.score.tuning import POINTS, TuneRequest

        points = POINTS if self.tune_points is None else self.tune_points
        if not 2 <= points <= MAX_TUNE_POINTS:
            raise UsageError(f"--tune-points must be between 2 and {MAX_TUNE_POINTS}, got {points}")
        return TuneRequest(points=points, lm_weight=self.lm_weight,
                           lm_range=_span(self.tune_lm_weights, "--tune-lm-weights", low=0.0),
                           word_penalty=self.word_penalty,
                           penalty_range=_span(self.tune_word_penalties, "--tune-word-penalties"),
                           mix_weight=self.mix_lambda if self.mix_lm is not None else None,
                           backward_weight=self.backward_weight)

    def _check_inputs(self) -> None:
        if self.nbest is not None and self.file is not None:
            raise UsageError("--nbest reads its own file: give FILE or --nbest, not both")
        if self.nbest is not None and (self.context is not None or self.cache or self.dynamic):
            raise UsageError("--nbest scores each hypothesis alone: --context, --cache and --dynamic do not apply")
        if self.pairs is not None:
            clash = [name for name, on in {
                "FILE": self.file is not None, "--nbest": self.nbest is not None, "--query": self.query,
                "--per-sentence": self.per_sentence, "--debug": self.debug > 0,
                "--context": self.context is not None, "--cache": self.cache > 0, "--dynamic": self.dynamic}.items()
                     if on]
            if clash:
                raise UsageError(f"--pairs reads its own file and scores each sentence alone: {' and '.join(clash)} "
                                 f"{'does' if len(clash) == 1 else 'do'} not go with it")

    @property
    def text_output(self) -> str:
        """The layout a scored text is printed in: a key of :data:`~rnnlm_cli.score.text_outputs.TEXT_OUTPUTS`."""
        if self.query:
            return "kenlm" if self.kenlm else "query-scores" if self.per_sentence else "query"
        if self.per_sentence:
            return "per-sentence"
        if self.json_output:
            return "json"
        return {0: "srilm", 1: "debug", 2: "debug-words"}[self.debug]

    @property
    def kenlm(self) -> bool:
        """--query's answers in KenLM's layout (word ids, OOVs as <unk>)."""
        return self.query_format == "kenlm"

    @cached_property
    def scoring(self) -> ScoringConfig:
        """How every token is scored: the context, OOVs, the cache, dynamic evaluation, the weights."""
        given = {"cache_theta": self.cache_theta, "cache_lambda": self.cache_lambda, "dynamic_lr": self.dynamic_lr,
                 "dynamic_rule": self.dynamic_rule, "dynamic_weights": self.dynamic_weights, "dynamic_decay": self.dynamic_decay, "dynamic_segment": self.dynamic_segment,
                 "mix_weight": self.mix_lambda, "lm_weight": self.lm_weight, "word_penalty": self.word_penalty,
                 "backward_weight": self.backward_weight}
        alone = self.query or self.nbest is not None or self.pairs is not None
        return ScoringConfig(
            context=self.context or ("sentence" if alone else "stream"),
            # KenLM scores a word outside the vocabulary as <unk> and counts it: so does its layout.
            unk=self.unk or self.nbest is not None or self.pairs is not None or self.kenlm,
            cache=self.cache, dynamic=self.dynamic, amp=self.amp,
            **{name: value for name, value in given.items() if value is not None})

    @cached_property
    def lists(self) -> NBestConfig:
        """How n-best lists are read, scored and printed."""
        return NBestConfig(format=self.nbest_format or NBestConfig.format, acoustic=self.nbest_acoustic,
                           sort=self.nbest_sort, output=self.nbest_output or NBestConfig.output, cost=self.nbest_cost,
                           symbols=self.symbols, carry_state=self.carry_state or NBestConfig.carry_state)

    @property
    def mode(self) -> str:
        """Which of :data:`MODES` the call asks for."""
        if self.pairs is not None:
            return "pairs"
        if self.tune:
            return "tune"
        if self.nbest is not None:
            return "rescore" if self.lists.plain else "lists"
        return "text" if self.file is not None else "fit"

    @property
    def fit_report_to_stdout(self) -> bool:
        """The fitted weight is the call's result (nothing else is scored): it goes to stdout."""
        return self.mode == "fit"

    def inputs(self) -> list[tuple[str, str]]:
        """``(name, path)`` of every file the call reads, as the user named it."""
        return self.named_inputs(vars(self))

    @staticmethod
    def named_inputs(options: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(name, path)`` of the files ``options`` (a request's fields, or some of them) name."""
        return [(FLAGS.get(field, "--" + field.replace("_", "-")), options[field]) for field in INPUTS
                if isinstance(options.get(field), str)]

    def check_tokenizer(self, tokenizer) -> None:
        """What the model's tokenizer must allow, once it is loaded."""
        if self.kenlm and tokenizer.kind != "word":
            raise UsageError(f"--format kenlm gives each word a vocabulary id: it needs a word model, "
                             f"not a {tokenizer.kind} one")


def _needs(on: bool, master: str, dependents: dict) -> None:
    """Options that only mean something beside ``master`` are refused without it."""
    given = [name for name, value in dependents.items() if value is not None]
    if given and not on:
        raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} {master}")


def _span(text: str | None, flag: str, low: float | None = None) -> tuple[float, float] | None:
    """``LO:HI`` as two finite numbers, LO < HI (and LO >= ``low``)."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        start, stop = (float(part) for part in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        start = stop = None
    if start is None or not (math.isfinite(start) and math.isfinite(stop)) or start >= stop:
        raise UsageError(f"{flag} takes LO:HI, two numbers with LO < HI, got {text!r}")
    if low is not None and start < low:
        raise UsageError(f"{flag} must start at {low:g} or above, got {text!r}")
    return start, stop
