"""`rnnlm compare`'s options as one request: checked before any run trains."""

from __future__ import annotations

import pytest

from rnnlm_cli.analysis.compare_request import CompareRequest
from rnnlm_cli.errors import UsageError


@pytest.mark.parametrize("options, says", [
    ({}, "one of the two"),
    ({"vary": ["cell=rnn,gru"], "variants": "v.yaml"}, "one of the two"),
    ({"vary": ["cell=rnn"], "budget": "soon"}, "--budget must be a number"),
    ({"vary": ["cell=rnn"], "repeat": 1.5}, "--repeat must be a whole number"),
])
def test_requests_that_cannot_mean_anything_are_refused(options, says):
    with pytest.raises(UsageError, match=says):
        CompareRequest(**{"corpus": "c.txt", "valid": "v.txt", "budget": 1.0, **options})


def test_the_inputs_are_the_files_given_by_option():
    request = CompareRequest("c.txt", "v.txt", 60.0, vary=["cell=rnn,gru"], pairs="p.tsv")
    assert request.vary == ("cell=rnn,gru",)  # a list from the command line, kept as a tuple
    assert request.inputs() == {"corpus": "c.txt", "valid": "v.txt", "pairs": "p.tsv"}
