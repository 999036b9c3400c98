"""`rnnlm eval`'s options as one request: which job a call asks for, and the combinations refused
before any file is read."""

from __future__ import annotations

import pytest

from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.eval_request import EvalRequest


@pytest.mark.parametrize("options, mode", [
    ({"file": "t.txt"}, "text"),
    ({"file": "-", "query": True}, "text"),
    ({"nbest": "h.nbest"}, "rescore"),
    ({"nbest": "h.txt", "nbest_output": "token-scores"}, "lists"),
    ({"nbest": "h.txt", "symbols": "words.txt"}, "lists"),
    ({"nbest": "h.txt", "carry_state": "best"}, "lists"),
    ({"pairs": "p.tsv"}, "pairs"),
    ({"mix_lm": "lm.arpa", "fit_lambda": "valid.txt"}, "fit"),
])
def test_the_mode_follows_the_inputs_and_outputs_given(options, mode):
    request = EvalRequest(model="m.pt", **options)
    assert request.mode == mode
    assert request.fit_report_to_stdout == (mode == "fit")


@pytest.mark.parametrize("options, context, unk", [
    ({"file": "t.txt"}, "stream", False),
    ({"file": "t.txt", "query": True}, "sentence", False),
    ({"file": "t.txt", "query": True, "query_format": "kenlm"}, "sentence", True),
    ({"nbest": "h.nbest"}, "sentence", True),
    ({"pairs": "p.tsv"}, "sentence", True),
    ({"file": "t.txt", "context": "sentence", "unk": True}, "sentence", True),
])
def test_the_scoring_context_and_oovs_follow_the_job(options, context, unk):
    scoring = EvalRequest(model="m.pt", **options).scoring
    assert (scoring.context, scoring.unk) == (context, unk)


@pytest.mark.parametrize("options, message", [
    ({}, "missing FILE"),
    ({"file": "t", "json_output": True, "debug": 2}, "--json and --debug choose different outputs"),
    ({"file": "t", "query_format": "kenlm"}, "--format kenlm is a layout of --query"),
    ({"file": "t", "nbest": "h"}, "give FILE or --nbest, not both"),
    ({"nbest": "h", "cache": 10}, "--context, --cache and --dynamic do not apply"),
    ({"pairs": "p", "file": "t"}, "FILE does not go with it"),
    ({"file": "t", "mix_lambda": 0.5}, "--lambda needs --mix-lm"),
    ({"file": "t", "cache_theta": 0.3}, "--cache-theta needs --cache N"),
    ({"file": "t", "symbols": "w.txt"}, "--symbols needs --nbest"),
    ({"nbest": "h", "nbest_best": True, "nbest_output": "token-scores"}, "--nbest-best prints from --output rescored"),
    ({"nbest": "h", "nbest_output": "words"}, "--output must be one of"),
    ({"file": "t", "debug": 3}, "--debug must be 0, 1 or 2"),
])
def test_combinations_that_mean_nothing_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        EvalRequest(model="m.pt", **options)


def test_inputs_name_every_file_read():
    request = EvalRequest(model="m.pt", nbest="h.txt", symbols="w.txt", nbest_acoustic="ac.txt", mix_lm="lm.arpa",
                          fit_lambda="dev.txt")
    assert request.inputs() == [("MODEL", "m.pt"), ("--nbest", "h.txt"), ("--mix-lm", "lm.arpa"),
                                ("--fit-lambda", "dev.txt"), ("--nbest-acoustic", "ac.txt"), ("--symbols", "w.txt")]
