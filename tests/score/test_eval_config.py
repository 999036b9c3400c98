"""`rnnlm eval --config FILE`: defaults < the YAML file < flags given, checked like flags.

The model is uniform over 7 words (eval_support), so a line of N words scores N+1 tokens of
log10(1/7) each: the figures below are worked out by hand, not read back from the program.
"""

from __future__ import annotations

import json
import math

import pytest

from rnnlm_cli.score.eval_request import EvalRequest
from rnnlm_cli.text.tokenizers import WordTokenizer

from eval_support import LOG_P, WORDS, ok, run, save, uniform, usage_error, write


@pytest.fixture
def files(tmp_path):
    model = save(tmp_path / "u.pt", uniform(len(WORDS)), WordTokenizer(WORDS))
    text = write(tmp_path / "t.txt", "the dog runs .\nthe cat .\n")
    return model, text, tmp_path


def test_a_config_file_sets_what_the_flags_would(files):
    model, text, folder = files
    config = write(folder / "eval.yaml", "json: true\nper-sentence: false\ncontext: sentence\n")
    result = json.loads(ok(model, text, "--config", config).stdout)
    # 7 words and 2 sentence ends, each log10(1/7); with the line ends, 5 and 4 tokens a line.
    assert math.isclose(result["logprob"], 9 * LOG_P, rel_tol=1e-6)  # a float32 model
    assert result == json.loads(ok(model, text, "--json", "--context", "sentence").stdout)


def test_a_flag_given_wins_over_the_config_file(files):
    model, text, folder = files
    config = write(folder / "eval.yaml", "per_sentence: true\n")
    assert [float(line) for line in ok(model, text, "--config", config).stdout.split()] == pytest.approx(
        [5 * LOG_P, 4 * LOG_P])
    config = write(folder / "debug.yaml", "debug: 2\n")
    shown = ok(model, text, "--config", config, "--debug", "0").stdout.splitlines()
    assert len(shown) == 2 and shown[0].startswith("file ")  # the totals alone: --debug 0 was typed


@pytest.mark.parametrize("yaml_text, says", [
    ("bogus: 1\n", "not options of rnnlm eval: bogus"),
    ("model: other.pt\n", "not options of rnnlm eval: model"),
    ("file: other.txt\n", "not options of rnnlm eval: file"),
    ("debug: lots\n", "--debug must be a whole number"),
    ("lambda: 0.5\n", "--lambda needs --mix-lm"),
    ("json: true\nper-sentence: true\n", "--json and --per-sentence choose different outputs"),
])
def test_a_config_file_is_checked_as_the_flags_are(files, yaml_text, says):
    model, text, folder = files
    config = write(folder / "eval.yaml", yaml_text)
    assert says in usage_error(model, text, "--config", config)


def test_a_missing_config_file_is_exit_66(files):
    model, text, folder = files
    result = run(model, text, "--config", folder / "nowhere.yaml")
    assert result.exit_code == 66 and "no such config file" in result.stderr


def test_the_config_from_stdin_and_the_text_from_stdin_are_refused_before_reading(files):
    model, _, _ = files
    result = run(model, "-", "--config", "-", input="json: true\n")
    assert result.exit_code == 2 and "FILE and --config are both '-'" in result.stderr


def test_the_config_may_come_from_stdin(files):
    model, text, _ = files
    result = ok(model, text, "--config", "-", input="json: true\n")
    assert json.loads(result.stdout)["sentences"] == 2


def test_the_request_resolves_defaults_then_file_then_flags(tmp_path):
    config = write(tmp_path / "c.yaml", "context: sentence\ncache: 10\ncache-theta: 0.5\n")
    given = {"model": "m.pt", "file": "t.txt", "context": "stream", "cache": None, "debug": None, "config": str(config)}
    request = EvalRequest.resolve(given)  # None: not given on the command line
    assert (request.context, request.cache, request.cache_theta, request.debug) == ("stream", 10, 0.5, 0)
    assert request.config == str(config) and ("--config", str(config)) in request.inputs()
