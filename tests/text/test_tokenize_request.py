"""`rnnlm tokenize`'s options as one request: the combinations refused before any file is read."""

from __future__ import annotations

import pytest

from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.text.tokenize_request import TokenizeRequest


@pytest.mark.parametrize("options, says", [
    ({}, "nothing to do"),
    ({"out": "c.tok", "print_as": "words"}, "--print must be 'ids' or 'pieces'"),
    ({"out": "c.tok", "tokenizer": "t.json", "symbols": "words.txt"}, "pick one"),
    ({"decode": True}, "--decode needs --tokenizer"),
    ({"out": "c.tok", "tokenizer": "t.json", "min_count": 2, "model_type": "bpe"},
     "--min-count, --sp-model learn a tokenizer; with --tokenizer there is nothing to learn"),
    ({"print_as": "ids"}, "printing from stdin needs --tokenizer"),
    ({"out": "c.tok", "kind": "letters"}, "unknown tokenizer kind"),
    ({"out": "c.tok", "min_count": "two"}, "--min-count must be a whole number"),
])
def test_requests_that_cannot_mean_anything_are_refused(options, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        TokenizeRequest("-", **options)


def test_the_learning_options_given_override_the_defaults():
    request = TokenizeRequest("c.txt", out="c.tok", kind="char", min_count=3)
    assert request.learning == TokenizerConfig(kind="char", min_count=3)
    assert request.source is None and TokenizeRequest("c.txt", out="c.tok").learning == TokenizerConfig()


def test_a_given_tokenizer_is_the_source():
    request = TokenizeRequest("c.txt", symbols="words.txt", print_as="ids")
    assert (request.source, request.source_flag) == ("words.txt", "--symbols")
    assert TokenizeRequest("ids.txt", tokenizer="t.json", decode=True).source == "t.json"
