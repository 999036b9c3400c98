"""Regularisation fitted to the epochs a run plans: low for one pass, more for more, never
over a value someone set; the epochs from the steps, or from the clock at the timed speed."""

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.train.job import resolve_train
from rnnlm_cli.train.regularization_fit import (DROPOUT_BY_EPOCHS, FITTED_REGULARIZATION, fit_to_budget,
                                                regularization_for)

TOKENS = 1_000_001  # 64 streams of 15,625 tokens: 446 segments of 35 a stream, an epoch
STEPS_PER_EPOCH = 447  # the last, shorter segment counts as a step


def job(flags=None, preset=None, config=None):
    given = {"batch_size": 64, "bptt": 35, **(flags or {})}
    return resolve_train("corpus.txt", given, preset=preset, config_path=config)


def never_timed(candidate):
    raise AssertionError("a run without a clock has no step to time")


def test_one_pass_gets_no_dropout_and_more_epochs_never_get_less():
    assert regularization_for(0.5) == regularization_for(1.0) == regularization_for(1.4)
    assert regularization_for(1.0).dropout == 0.0
    rates = [regularization_for(epochs).dropout for epochs in (0.2, 1, 2, 3, 5, 8, 12, 20, 40, 100)]
    assert rates == sorted(rates) and rates[-1] >= 0.3  # a long run is held back hard
    assert [entry[0] for entry in DROPOUT_BY_EPOCHS] == sorted(entry[0] for entry in DROPOUT_BY_EPOCHS)


def test_the_rate_is_the_table_s_at_its_points_and_linear_between():
    for epochs, rate in DROPOUT_BY_EPOCHS:
        assert regularization_for(epochs).dropout == rate
    (low, low_rate), (high, high_rate) = DROPOUT_BY_EPOCHS[:2]
    assert regularization_for((low + high) / 2).dropout == pytest.approx((low_rate + high_rate) / 2, abs=0.005)


@pytest.mark.parametrize("epochs", [1, 3, 10, 30])
def test_the_epochs_planned_choose_the_rates_and_a_line_says_so(epochs):
    notes = []
    fitted = fit_to_budget(job({"epochs": epochs}), TOKENS, None, never_timed, notes)
    expected = regularization_for(epochs)
    assert fitted.model.dropout == expected.dropout
    assert len(notes) == 1 and notes[0].startswith(f"regularisation: --dropout {expected.dropout:g} for ")
    assert f"about {epochs:.1f} epochs ({epochs * STEPS_PER_EPOCH:,} steps planned)" in notes[0]


def test_max_steps_counts_before_epochs():
    notes = []
    fitted = fit_to_budget(job({"epochs": 50, "max_steps": STEPS_PER_EPOCH // 2}), TOKENS, None, never_timed, notes)
    assert fitted.model.dropout == regularization_for(0.5).dropout
    assert "about 0.5 epochs" in notes[0]


@pytest.mark.parametrize("seconds, per_step, epochs", [(60, 0.1, 60 / 0.1 / STEPS_PER_EPOCH),
                                                       (1200, 0.05, 1200 / 0.05 / STEPS_PER_EPOCH)])
def test_a_clock_buys_the_epochs_its_seconds_train_at_the_timed_speed(seconds, per_step, epochs):
    notes = []
    fitted = fit_to_budget(job({"epochs": 1000}), TOKENS, seconds, lambda candidate: per_step, notes)
    assert fitted.model.dropout == regularization_for(epochs).dropout
    assert f"about {epochs:.1f} epochs" in notes[0] and f"at {per_step:.3g} s a step, timed here" in notes[0]


def test_a_clock_longer_than_the_planned_steps_does_not_add_epochs():
    notes = []
    fit_to_budget(job({"epochs": 2}), TOKENS, 10_000, lambda candidate: 0.01, notes)
    assert f"about 2.0 epochs ({2 * STEPS_PER_EPOCH:,} steps planned)" in notes[0]


def test_values_someone_set_are_kept(tmp_path):
    notes = []
    given = fit_to_budget(job({"epochs": 30, "dropout": 0.05}), TOKENS, None, never_timed, notes)
    assert given.model.dropout == 0.05 and notes == []
    config = tmp_path / "run.yaml"
    config.write_text("dropout: 0.15\n")
    assert fit_to_budget(job({"epochs": 30}, config=str(config)), TOKENS, None, never_timed, notes).model.dropout == 0.15
    assert notes == []
    # A preset that names its dropout keeps it (sample-cpu, the quickstart's); built in code, nothing is fitted.
    assert fit_to_budget(job({"epochs": 30}, preset="sample-cpu"), TOKENS, None, never_timed, []).model.dropout == 0.3
    coded = job({"epochs": 30})
    coded = type(coded)(**{**coded.__dict__, "origins": None})
    assert fit_to_budget(coded, TOKENS, None, never_timed, []) is coded


def test_a_bare_run_records_the_fitted_rates_in_its_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the dog runs .\nthe dogs run .\na cat sees the dog .\n" * 40)
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--out", str(out), "--epochs", "12", "--batch-size", "2",
                                      "--bptt", "8", "--hidden", "8", "--emb", "8", "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("regularisation:")]
    assert len(lines) == 1 and "3 steps planned" in lines[0]
    saved = load_checkpoint(str(out)).model_config
    assert {name: getattr(saved, name) for name in FITTED_REGULARIZATION} == {"dropout": 0.0}  # 3 steps: under an epoch
    assert saved.dropout != type(saved)(vocab_size=2).dropout  # not the class default


def narrow_or_wide(per_step_narrow, per_step_wide):
    return lambda candidate: per_step_wide if candidate.model.hidden > 256 else per_step_narrow


def test_a_clock_for_many_epochs_on_a_cpu_trains_a_wider_model_held_back_harder():
    notes = []
    # 1,200 s at 0.05 s a step: 53.7 epochs of 1x256; at 0.11 s, 24.4 epochs of 1x512.
    fitted = fit_to_budget(job({"epochs": 1000, "hidden": None}), TOKENS, 1200, narrow_or_wide(0.05, 0.11), notes,
                           may_widen=True)
    wide_epochs = 1200 / 0.11 / STEPS_PER_EPOCH
    assert fitted.model.hidden == 512 and fitted.model.dropout == regularization_for(2 * wide_epochs).dropout
    assert notes[0].startswith("width: --hidden 512, twice 256") and notes[1].startswith("regularisation: --dropout")


@pytest.mark.parametrize("seconds, wide_step, given, may_widen", [
    (300, 0.11, {}, True),  # 13 epochs of 1x256: not enough to widen
    (1200, 0.5, {}, True),  # the wider model would see under 8 epochs
    (1200, 0.11, {"hidden": 256}, True),  # a width someone set
    (1200, 0.11, {}, False),  # not on this device
])
def test_the_width_stays_when_the_trade_does_not_hold(seconds, wide_step, given, may_widen):
    notes = []
    fitted = fit_to_budget(job({"epochs": 1000, **given}), TOKENS, seconds, narrow_or_wide(0.05, wide_step), notes,
                           may_widen=may_widen)
    assert fitted.model.hidden == 256 and not notes[0].startswith("width")
