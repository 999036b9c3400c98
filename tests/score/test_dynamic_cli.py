"""``rnnlm eval --dynamic`` as a user runs it: the fitted values in one log line and in ``--json``."""

from __future__ import annotations

import json

from eval_support import ok, usage_error, write
# Fixtures are found by name in the test module, the ones they request among them.
from eval_support import random_lm, word_tok  # noqa: F401

LONG = "the dog runs\na cat sees the dog\n" * 500  # 4,500 tokens with the line ends: a fit slice and more


def test_the_fitted_rate_is_reported_in_one_line_and_in_the_json(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", LONG)
    result = ok(str(random_lm), str(text), "--dynamic", "--json")
    record = json.loads(result.stdout)["dynamic"]
    assert (record["rule"], record["weights"], record["decay"]) == ("rms", "output", 0.01)
    assert record["fit_tokens"] >= 4096 and record["fit_ppl"] <= record["fit_plain_ppl"]
    assert record["tried"] and all(set(trial) == {"lr", "ppl"} for trial in record["tried"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("dynamic evaluation:")]
    assert len(lines) == 1
    if record["lr"] is None:
        assert "no rate beat plain scoring" in lines[0]
    else:
        assert record["lr"] in [trial["lr"] for trial in record["tried"]]
        assert f"lr {record['lr']:.3g}" in lines[0] and record["steps"] > 0


def test_a_given_rate_is_used_as_given(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", "the dog runs\n" * 20)
    result = ok(str(random_lm), str(text), "--dynamic", "--dynamic-rule", "sgd", "--dynamic-lr", "0.25",
                "--dynamic-segment", "4", "--json")
    record = json.loads(result.stdout)["dynamic"]
    assert (record["rule"], record["lr"], record["steps"], record["back_offs"]) == ("sgd", 0.25, 20, 0)
    assert "sgd steps at lr 0.25 (given)" in result.stderr


def test_a_text_shorter_than_the_slice_is_scored_plainly_and_says_so(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", "the dog runs\n" * 5)
    plain = json.loads(ok(str(random_lm), str(text), "--json").stdout)
    result = ok(str(random_lm), str(text), "--dynamic", "--json")
    scored = json.loads(result.stdout)
    assert scored["dynamic"]["lr"] is None and scored["ppl"] == plain["ppl"]
    assert "shorter than the 4,096 tokens" in result.stderr


def test_the_sentence_context_adapts_too(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", "the dog runs\n" * 30)
    alone = json.loads(ok(str(random_lm), str(text), "--context", "sentence", "--json").stdout)
    adapted = json.loads(ok(str(random_lm), str(text), "--context", "sentence", "--dynamic", "--dynamic-rule", "sgd",
                            "--dynamic-lr", "1.0", "--json").stdout)
    assert adapted["ppl"] < alone["ppl"]  # the same line 30 times: adapting on each helps the next


def test_a_rule_or_scope_not_known_is_a_usage_error(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", "the dog runs\n")
    assert "--dynamic-rule" in usage_error(str(random_lm), str(text), "--dynamic", "--dynamic-rule", "adam")
    assert "--dynamic-weights" in usage_error(str(random_lm), str(text), "--dynamic", "--dynamic-weights", "some")
    assert "--dynamic-weights" in usage_error(str(random_lm), str(text), "--dynamic-weights", "all")
