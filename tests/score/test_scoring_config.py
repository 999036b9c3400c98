"""What ``eval`` may be asked: every field's checks end in a usage error (exit 2) naming its flag."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.scoring_config import MAX_CACHE, MAX_SEGMENT, ScoringConfig


@pytest.mark.parametrize("fields, flag", [
    ({"context": "line"}, "--context"),
    ({"cache": -1}, "--cache"),
    ({"cache": MAX_CACHE + 1}, "--cache"),
    ({"cache": 2.5}, "--cache"),
    ({"cache_theta": -0.1}, "--cache-theta"),
    ({"cache_theta": math.inf}, "--cache-theta"),
    ({"cache_lambda": 1.01}, "--cache-lambda"),
    ({"cache_lambda": -0.01}, "--cache-lambda"),
    ({"cache_lambda": math.nan}, "--cache-lambda"),
    ({"dynamic_lr": 0.0}, "--dynamic-lr"),
    ({"dynamic_lr": -1.0}, "--dynamic-lr"),
    ({"dynamic_decay": 1.5}, "--dynamic-decay"),
    ({"dynamic_decay": -0.5}, "--dynamic-decay"),
    ({"dynamic_segment": 0}, "--dynamic-segment"),
    ({"dynamic_segment": MAX_SEGMENT + 1}, "--dynamic-segment"),
    ({"mix_weight": 1.5}, "--lambda"),
    ({"mix_weight": -0.1}, "--lambda"),
    ({"mix_weight": math.nan}, "--lambda"),
    ({"amp": "fp16"}, "--amp"),
    ({"lm_weight": math.inf}, "--lm-weight"),
    ({"word_penalty": math.nan}, "--word-penalty"),
    ({"word_penalty": "1"}, "--word-penalty"),
])
def test_a_bad_value_is_a_usage_error_naming_its_flag(fields, flag):
    with pytest.raises(UsageError) as caught:
        ScoringConfig(**fields)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(flag + " ")


@pytest.mark.parametrize("fields", [
    {"cache": 1}, {"cache": 0}, {"cache": MAX_CACHE}, {"cache_theta": 0.0}, {"cache_lambda": 0.0},
    {"cache_lambda": 1.0}, {"dynamic_lr": 1e-9}, {"dynamic_decay": 0.0}, {"dynamic_decay": 1.0},
    {"dynamic_segment": 1}, {"dynamic_segment": MAX_SEGMENT}, {"mix_weight": 0.0}, {"mix_weight": 1.0},
    {"amp": "bf16"}, {"amp": "auto"}, {"context": "sentence"}, {"lm_weight": -2.0}, {"word_penalty": -0.5},
])
def test_values_on_the_edges_are_accepted(fields):
    config = ScoringConfig(**fields)
    for name, value in fields.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize("fields", [{"cache": 10}, {"dynamic": True}])
def test_cache_and_dynamic_go_with_either_context(fields):
    for context in ("stream", "sentence"):
        assert ScoringConfig(context=context, **fields).context == context


def test_defaults():
    config = ScoringConfig()
    assert (config.context, config.unk, config.cache, config.dynamic, config.amp) == ("stream", False, 0, False, "off")
    assert (config.mix_weight, config.lm_weight, config.word_penalty) == (0.5, 1.0, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cache = 5


def test_dynamic_evaluation_steps_every_segment_within_the_chunks(word_tokenizer):
    from conftest import tiny_model

    built = ScoringConfig(dynamic=True, dynamic_rule="sgd", dynamic_lr=0.1, dynamic_segment=7).build_dynamic(
        tiny_model(word_tokenizer.vocab_size))
    assert (built.segment, built.weights, built.lr, built.rule) == (7, "output", 0.1, "sgd")


def test_parts_are_built_only_when_asked_for():
    from rnnlm_cli.score.cache import NeuralCache

    assert ScoringConfig().build_cache() is None
    assert ScoringConfig().build_dynamic(model=None) is None
    cache = ScoringConfig(cache=12, cache_theta=0.3, cache_lambda=0.1).build_cache()
    assert isinstance(cache, NeuralCache)
    assert (cache.size, cache.theta, cache.weight) == (12, 0.3, 0.1)
    # Two builds are two caches: a second text never sees the first one's history.
    assert cache is not ScoringConfig(cache=12).build_cache()


def test_importing_the_config_does_not_import_torch():
    code = "import sys, rnnlm_cli.score.scoring_config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
