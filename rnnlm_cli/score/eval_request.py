"""One ``rnnlm eval`` call as the user gave it, checked as a whole.

``eval`` does five things (score a text, answer queries, rescore n-best lists, judge minimal
pairs, fit a mixture weight) through one set of options, and most options mean something
for only some of them. :class:`EvalRequest` holds the options by the flags' names, refuses
the combinations that cannot mean anything (exit 2, before any file is read), and gives
the scoring and n-best configurations and which of the five jobs the call asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Collection, Mapping

from rnnlm_cli.config import check_values, load_yaml
from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.scoring_config import DEBUG_LEVELS, QUERY_FORMATS, NBestConfig, ScoringConfig

MODES = ("pairs", "lists", "rescore", "text", "fit")
"""What a call does: judge minimal pairs, score n-best lists for Kaldi (or with a carried state
or symbol ids), rescore SRILM-style, score a text, or only fit the mixture weight."""


FLAGS = {"model": "MODEL", "file": "FILE", "json_output": "--json", "query_format": "--format",
         "mix_lambda": "--lambda", "nbest_output": "--output", "nbest_cost": "--cost"}
"""Fields whose flag (or argument) is not ``--`` and the field's name with dashes."""
INPUTS = ("model", "file", "config", "nbest", "pairs", "mix_lm", "fit_lambda", "nbest_acoustic", "symbols")
"""Fields that name a file the call reads."""
NOT_IN_CONFIG = ("model", "file", "config")
"""Fields a --config file cannot set: what to score is named on the command line."""


@dataclass(frozen=True)
class EvalRequest:
    """The options of one ``rnnlm eval`` call (None: not given), named as its parameters."""

    model: str
    file: str | None = None
    context: str | None = None
    debug: int = 0
    json_output: bool = False
    per_sentence: bool = False
    query: bool = False
    query_format: str = "srilm"
    unk: bool = False
    mix_lm: str | None = None
    mix_lm_backend: str = "auto"
    mix_lambda: float | None = None
    fit_lambda: str | None = None
    cache: int = ScoringConfig.cache
    cache_theta: float | None = None
    cache_lambda: float | None = None
    dynamic: bool = ScoringConfig.dynamic
    dynamic_lr: float | None = None
    dynamic_decay: float | None = None
    dynamic_segment: int | None = None
    nbest: str | None = None
    nbest_format: str | None = None
    nbest_acoustic: str | None = None
    lm_weight: float | None = None
    word_penalty: float | None = None
    nbest_sort: bool = NBestConfig.sort
    nbest_best: bool = False
    nbest_output: str | None = None
    nbest_cost: bool = NBestConfig.cost
    symbols: str | None = None
    carry_state: str | None = None
    pairs: str | None = None
    amp: str = ScoringConfig.amp
    device: str = "auto"
    strict: bool = False
    config: str | None = None
    """The YAML file the options not given as flags came from."""

    @classmethod
    def resolve(cls, params: Mapping[str, Any], given: Collection[str], config: str | None) -> "EvalRequest":
        """The request of a call whose parameters are ``params``, of which the user gave ``given``
        on the command line: defaults < the ``config`` YAML file (options named as the flags, - or _)
        < flags."""
        values = dict(params, config=config)
        if config is not None:
            by_key = {FLAGS.get(name, "--" + name).lstrip("-").replace("-", "_"): name
                      for name in (spec.name for spec in fields(cls)) if name not in NOT_IN_CONFIG}
            from_file = load_yaml(config)
            stray = sorted(set(from_file) - set(by_key))
            if stray:
                raise UsageError(f"{config}: not options of rnnlm eval: {', '.join(stray)}")
            values.update({by_key[key]: value for key, value in from_file.items() if by_key[key] not in given})
        return cls(**values)

    def __post_init__(self) -> None:
        check_values(self, FLAGS)
        self._check_outputs()
        self._check_inputs()
        _needs(self.mix_lm is not None, "--mix-lm", {
            "--lambda": self.mix_lambda, "--fit-lambda": self.fit_lambda,
            "--mix-lm-backend": None if self.mix_lm_backend == "auto" else self.mix_lm_backend})
        _needs(self.cache > 0, "--cache N", {"--cache-theta": self.cache_theta, "--cache-lambda": self.cache_lambda})
        _needs(self.dynamic, "--dynamic", {"--dynamic-lr": self.dynamic_lr, "--dynamic-decay": self.dynamic_decay,
                                           "--dynamic-segment": self.dynamic_segment})
        _needs(self.nbest is not None, "--nbest", {
            "--nbest-format": self.nbest_format, "--nbest-acoustic": self.nbest_acoustic,
            "--lm-weight": self.lm_weight, "--word-penalty": self.word_penalty,
            "--nbest-sort": self.nbest_sort or None, "--nbest-best": self.nbest_best or None,
            "--output": self.nbest_output, "--cost": self.nbest_cost or None, "--symbols": self.symbols,
            "--carry-state": self.carry_state})
        if self.file is None and self.nbest is None and self.pairs is None and self.fit_lambda is None:
            raise UsageError("missing FILE: the text to score ('-' for stdin)")
        # Both configurations are built (and check their values) now, before any file is read.
        _, lists = self.scoring, self.lists
        if self.nbest_best and lists.output != "rescored":
            raise UsageError(f"--nbest-best prints from --output rescored, not {lists.output}")

    def _check_outputs(self) -> None:
        if self.debug not in DEBUG_LEVELS:
            raise UsageError(f"--debug must be 0, 1 or 2, got {self.debug}")
        outputs = [name for name, on in (("--json", self.json_output), ("--per-sentence", self.per_sentence
                                                                          and not self.query),
                                         ("--debug", self.debug > 0), ("--query", self.query),
                                         ("--nbest", self.nbest is not None)) if on]
        if len(outputs) > 1:
            raise UsageError(f"{' and '.join(outputs)} choose different outputs: pick one")
        if self.query_format not in QUERY_FORMATS:
            raise UsageError(f"--format must be one of {', '.join(QUERY_FORMATS)}, got {self.query_format!r}")
        if self.kenlm and (not self.query or self.per_sentence):
            raise UsageError("--format kenlm is a layout of --query's per-word answers: give --query "
                             "(without --per-sentence)")

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
    def kenlm(self) -> bool:
        """--query's answers in KenLM's layout (word ids, OOVs as <unk>)."""
        return self.query_format == "kenlm"

    @cached_property
    def scoring(self) -> ScoringConfig:
        """How every token is scored: the context, OOVs, the cache, dynamic evaluation, the weights."""
        given = {"cache_theta": self.cache_theta, "cache_lambda": self.cache_lambda, "dynamic_lr": self.dynamic_lr,
                 "dynamic_decay": self.dynamic_decay, "dynamic_segment": self.dynamic_segment,
                 "mix_weight": self.mix_lambda, "lm_weight": self.lm_weight, "word_penalty": self.word_penalty}
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
