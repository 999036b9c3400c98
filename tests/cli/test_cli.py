"""The command line through Typer's test runner: flags, files written, output formats, exit codes.

Models are tiny (one layer of 16 units) and corpora are a few hundred lines of a toy
grammar, so every run takes a fraction of a second; the eval and generate tests share the
session's toy model (conftest), each on its own copy.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli import __version__
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.cli import app

from conftest import CLEAN_ENV, one_error_line, write_lines

TINY = ["--hidden", "16", "--emb", "8", "--layers", "1", "--epochs", "1", "--batch-size", "4", "--bptt", "8"]
COMMANDS = ("tokenize", "train", "eval", "generate", "export")
SRILM_LINE1 = re.compile(r"^file (\S+): (\d+) sentences, (\d+) words, (\d+) OOVs$")
SRILM_LINE2 = re.compile(r"^(\d+) zeroprobs, logprob= (\S+) ppl= (\S+) ppl1= (\S+)$")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args, input=None, env=None):
    return runner.invoke(app, [str(a) for a in args], input=input, env={**CLEAN_ENV, **(env or {})})


@pytest.fixture(scope="module")
def data(toy, tmp_path_factory):
    """The session's toy texts (conftest), in this module's own folder: some tests write beside them."""
    root = tmp_path_factory.mktemp("data")
    files = {name: Path(shutil.copyfile(toy[name], root / f"{name}.txt")) for name in ("train", "valid", "test")}
    return {"root": root, **files, **{f"{name}_lines": toy[f"{name}_lines"] for name in files}}


@pytest.fixture
def model(toy_model):
    """The session's toy LSTM (trained a few epochs, so that it prefers words to line ends), a copy."""
    return toy_model


def train_json(runner, corpus, out, *extra):
    result = run(runner, "train", corpus, "--out", out, *TINY, *extra, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- help and version


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_ends_with_examples(runner, name):
    result = run(runner, name, "--help")
    assert result.exit_code == 0
    text = result.stdout
    examples = text.rfind("Examples")
    assert examples > text.rfind("--help"), "the examples must come after the options"
    assert re.search(rf"^\W*rnnlm {name} \S", text[examples:], re.M), text[examples:]


def test_version(runner):
    result = run(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"rnnlm {__version__}"


def test_no_arguments_shows_help_without_an_empty_error(runner):
    result = run(runner)
    assert "Usage" in result.stdout
    assert "error" not in result.stderr


# ---------------------------------------------------------------- train: outputs


def test_train_writes_model_last_and_metrics_beside_out(runner, data, tmp_path):
    out = tmp_path / "run" / "m.pt"
    summary = train_json(runner, data["train"], out, "--max-steps", "3", "--log-interval", "1")
    assert summary["steps"] == 3 and summary["stop_reason"] == "max_steps"
    assert (tmp_path / "run" / "m.pt").is_file()
    assert (tmp_path / "run" / "m.last.pt").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "m.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3]
    valid = [r for r in records if r["event"] == "valid"]
    assert len(valid) == 1 and valid[0]["step"] == 3
    assert math.isclose(valid[0]["valid_ppl"], summary["best_valid_ppl"])
    # The best model and the last state are real checkpoints of the same run.
    assert load_checkpoint(out).metrics["step"] == 3
    assert load_checkpoint(tmp_path / "run" / "m.last.pt").training_state["progress"]["step"] == 3


def test_json_is_one_line_on_stdout_and_logs_go_to_stderr(runner, data, tmp_path):
    result = run(runner, "train", data["train"], "--out", tmp_path / "m.pt", *TINY, "--max-steps", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout)["steps"] == 2
    assert "training on " in result.stderr
    assert "training on" not in result.stdout


def test_plain_summary_names_the_model(runner, data, tmp_path):
    out = tmp_path / "m.pt"
    result = run(runner, "train", data["train"], "--out", out, *TINY, "--max-steps", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("best valid ppl ")
    assert "stopped by max_steps" in result.stdout and str(out) in result.stdout


def test_max_time_stops_early(runner, data, tmp_path):
    summary = train_json(runner, data["train"], tmp_path / "m.pt", "--epochs", "50", "--max-time", "0.001")
    assert summary["stop_reason"] == "max_time"
    assert summary["epochs"] < 1.0
    assert (tmp_path / "m.pt").is_file()


# ---------------------------------------------------------------- train: configuration


def test_config_precedence_defaults_then_yaml_then_flags(runner, data, tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("hidden: 24\nemb: 12\nbatch-size: 4\ntokenizer: char\n", encoding="utf-8")
    small = ["--layers", "1", "--bptt", "8", "--max-steps", "1"]

    def trained(name, *args):
        result = run(runner, "train", data["train"], "--out", tmp_path / name, *small, *args)
        assert result.exit_code == 0, result.stderr
        return load_checkpoint(tmp_path / name)

    from_yaml = trained("yaml.pt", "--config", yaml_file)
    assert (from_yaml.model_config.hidden, from_yaml.model_config.emb) == (24, 12)
    assert from_yaml.train_config["batch_size"] == 4
    assert from_yaml.tokenizer["kind"] == "char"
    flagged = trained("flag.pt", "--config", yaml_file, "--hidden", "20", "--tokenizer", "word")
    assert (flagged.model_config.hidden, flagged.model_config.emb) == (20, 12)
    assert flagged.tokenizer["kind"] == "word"
    defaults = trained("default.pt", "--batch-size", "4")
    assert (defaults.model_config.hidden, defaults.model_config.emb) == (256, 128)


def test_unknown_yaml_key_is_a_usage_error(runner, data, tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("hidden: 24\nhiden: 12\n", encoding="utf-8")
    result = run(runner, "train", data["train"], "--config", yaml_file, "--out", tmp_path / "m.pt")
    assert result.exit_code == 2
    assert "hiden" in one_error_line(result.stderr)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("cell, impl", [("lstm", "fused"), ("gru", "fused"), ("rnn", "fused"),
                                        ("lstm", "reference"), ("gru", "reference"), ("rnn", "reference")])
def test_every_cell_and_implementation_trains(runner, data, tmp_path, cell, impl):
    summary = train_json(runner, data["train"], tmp_path / "m.pt", "--cell", cell, "--impl", impl, "--max-steps", "2")
    assert math.isfinite(summary["best_valid_ppl"])
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert (checkpoint.model_config.cell, checkpoint.model_config.impl) == (cell, impl)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    assert checkpoint.state_dict["rnn.weight_hh_l0"].shape == (gates * 16, 16)


def test_tied_shares_embedding_and_decoder(runner, data, tmp_path):
    train_json(runner, data["train"], tmp_path / "t.pt", "--tied", "--hidden", "8", "--max-steps", "2")
    tied = load_checkpoint(tmp_path / "t.pt")
    assert tied.model_config.tied
    assert torch.equal(tied.state_dict["decoder.weight"], tied.state_dict["embedding.weight"])
    train_json(runner, data["train"], tmp_path / "u.pt", "--hidden", "8", "--max-steps", "2")
    untied = load_checkpoint(tmp_path / "u.pt")
    assert not untied.model_config.tied
    assert not torch.equal(untied.state_dict["decoder.weight"], untied.state_dict["embedding.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizers_train_and_are_recorded(runner, data, tmp_path, optimizer):
    train_json(runner, data["train"], tmp_path / "m.pt", "--optimizer", optimizer, "--max-steps", "2")
    assert load_checkpoint(tmp_path / "m.pt").train_config["optimizer"] == optimizer


def test_clip_zero_means_no_clipping(runner, data, tmp_path):
    def weights(name, clip):
        train_json(runner, data["train"], tmp_path / name, "--optimizer", "sgd", "--lr", "1", "--dropout", "0",
                   "--clip", clip, "--max-steps", "1")
        return load_checkpoint(tmp_path / name).state_dict

    off, huge, tiny = weights("off.pt", "0"), weights("huge.pt", "1e9"), weights("tiny.pt", "1e-9")
    # A bound no gradient reaches leaves the step as it is; a bound near zero all but stops it.
    assert all(torch.equal(off[k], huge[k]) for k in off)
    assert not all(torch.allclose(off[k], tiny[k]) for k in off)


def test_same_seed_same_weights_other_seed_differs(runner, data, tmp_path):
    def weights(name, seed):
        train_json(runner, data["train"], tmp_path / name, "--seed", seed, "--max-steps", "3")
        return load_checkpoint(tmp_path / name).state_dict

    first, again, other = weights("a.pt", "5"), weights("b.pt", "5"), weights("c.pt", "6")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


# ---------------------------------------------------------------- train: tokenizers and data


def test_char_tokenizer(runner, data, tmp_path):
    train_json(runner, data["train"], tmp_path / "m.pt", "--tokenizer", "char", "--max-steps", "2")
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.tokenizer["kind"] == "char"
    # Every distinct character (space included) plus <eos> and <unk>.
    assert checkpoint.model_config.vocab_size == len(set("".join(data["train_lines"]))) + 2


def test_byte_tokenizer(runner, data, tmp_path):
    train_json(runner, data["train"], tmp_path / "m.pt", "--tokenizer", "byte", "--max-steps", "2")
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.tokenizer["kind"] == "byte"
    assert checkpoint.model_config.vocab_size == 256 + 1  # every byte and <eos>


def test_sentencepiece_tokenizer(runner, data, tmp_path):
    train_json(runner, data["train"], tmp_path / "m.pt", "--tokenizer", "sentencepiece",
               "--vocab-size", "320", "--max-steps", "2")
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.tokenizer["kind"] == "sentencepiece"
    # Byte fallback puts all 256 bytes in the vocabulary; a small corpus may end below the size asked for.
    assert 256 < checkpoint.model_config.vocab_size <= 320


def test_sentencepiece_vocabulary_too_small_is_one_clear_error(runner, data, tmp_path):
    result = run(runner, "train", data["train"], "--out", tmp_path / "m.pt", *TINY,
                 "--tokenizer", "sentencepiece", "--vocab-size", "40")
    assert result.exit_code == 2
    assert "--vocab-size" in one_error_line(result.stderr)
    assert not (tmp_path / "m.pt").exists()


@pytest.fixture(scope="module")
def token_file(runner, data):
    """A token file and the tokenizer JSON it was made with."""
    tok, tokenizer_json = data["root"] / "train.tok", data["root"] / "word.json"
    result = run(runner, "tokenize", data["train"], "--out", tok, "--save-tokenizer", tokenizer_json)
    assert result.exit_code == 0, result.stderr
    return tok, tokenizer_json


def test_tokenizer_json_file(runner, data, token_file, tmp_path):
    _, tokenizer_json = token_file
    train_json(runner, data["train"], tmp_path / "m.pt", "--tokenizer", tokenizer_json, "--max-steps", "2")
    assert load_checkpoint(tmp_path / "m.pt").tokenizer == json.loads(tokenizer_json.read_text())


def test_train_from_token_file(runner, data, token_file, tmp_path):
    tok, tokenizer_json = token_file
    summary = train_json(runner, tok, tmp_path / "m.pt", "--max-steps", "2")
    assert summary["steps"] == 2
    assert load_checkpoint(tmp_path / "m.pt").tokenizer == json.loads(tokenizer_json.read_text())
    # Tokens were read from the file, not encoded again beside the model.
    assert not (tmp_path / "m.train.tok").exists()


def test_token_file_with_another_tokenizer_file_is_refused(runner, data, token_file, tmp_path):
    tok, _ = token_file
    char_json = tmp_path / "char.json"
    assert run(runner, "tokenize", data["train"], "--kind", "char", "--save-tokenizer", char_json).exit_code == 0
    result = run(runner, "train", tok, "--tokenizer", char_json, "--out", tmp_path / "m.pt", *TINY)
    assert result.exit_code == 65
    one_error_line(result.stderr)
    assert not (tmp_path / "m.pt").exists()


def test_token_file_with_another_tokenizer_kind_is_refused(runner, token_file, tmp_path):
    tok, _ = token_file
    result = run(runner, "train", tok, "--tokenizer", "char", "--out", tmp_path / "m.pt", *TINY, "--max-steps", "1")
    assert result.exit_code == 65


def test_without_valid_the_corpus_tail_is_held_out(runner, data, tmp_path):
    result = run(runner, "train", data["train"], "--out", tmp_path / "m.pt", *TINY, "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert "holding out" in result.stderr


def test_valid_text_file_is_used_whole(runner, data, tmp_path):
    result = run(runner, "train", data["train"], "--valid", data["valid"], "--out", tmp_path / "m.pt",
                 *TINY, "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert "holding out" not in result.stderr
    # Word tokens: every word plus one <eos> per line.
    expected = sum(len(line.split()) + 1 for line in data["valid_lines"])
    assert f" {expected} valid tokens" in result.stderr
    expected_train = sum(len(line.split()) + 1 for line in data["train_lines"])
    assert f" {expected_train:,} train tokens" in result.stderr


# ---------------------------------------------------------------- train: refusals


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_work(runner, data, tmp_path):
    out = tmp_path / "run" / "m.pt"
    result = run(runner, "train", data["train"], "--device", "cuda", "--out", out, *TINY)
    assert result.exit_code == 2
    assert "cuda" in one_error_line(result.stderr).lower()
    assert result.stdout == ""
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--bptt", "--hidden"])
def test_negative_sizes_are_usage_errors(runner, data, tmp_path, flag):
    result = run(runner, "train", data["train"], "--out", tmp_path / "run" / "m.pt", flag, "-1")
    assert result.exit_code == 2
    assert flag in one_error_line(result.stderr)
    assert not (tmp_path / "run").exists()


def test_missing_corpus(runner, tmp_path):
    result = run(runner, "train", tmp_path / "nope.txt", "--out", tmp_path / "m.pt", *TINY)
    assert result.exit_code == 66
    assert "nope.txt" in one_error_line(result.stderr)


def test_empty_corpus(runner, tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    result = run(runner, "train", tmp_path / "empty.txt", "--out", tmp_path / "m.pt", *TINY)
    assert result.exit_code == 65
    assert "empty" in one_error_line(result.stderr)
    assert not (tmp_path / "m.pt").exists()


def test_directory_as_corpus(runner, tmp_path):
    result = run(runner, "train", tmp_path, "--out", tmp_path / "m.pt", *TINY)
    assert result.exit_code == 66
    assert "directory" in one_error_line(result.stderr)


# ---------------------------------------------------------------- eval


def eval_json(runner, model, path) -> dict:
    result = run(runner, "eval", model, path, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_eval_prints_srilm_lines_consistent_with_json(runner, model, data):
    result = run(runner, "eval", model, data["test"])
    assert result.exit_code == 0, result.stderr
    line1, line2 = result.stdout.splitlines()
    head, tail = SRILM_LINE1.match(line1), SRILM_LINE2.match(line2)
    assert head and tail, result.stdout
    sentences, words, oovs = (int(g) for g in head.groups()[1:])
    assert sentences == len(data["test_lines"])
    assert words == sum(len(line.split()) for line in data["test_lines"])
    assert oovs == 0 and tail.group(1) == "0"

    totals = eval_json(runner, model, data["test"])
    assert (totals["sentences"], totals["words"], totals["oovs"]) == (sentences, words, oovs)
    logprob, ppl, ppl1 = (float(g) for g in tail.groups()[1:])
    assert totals["logprob"] < 0
    assert math.isclose(logprob, totals["logprob"], rel_tol=1e-5)
    assert math.isclose(ppl, totals["ppl"], rel_tol=1e-5)
    assert math.isclose(ppl1, totals["ppl1"], rel_tol=1e-5)
    assert math.isclose(totals["ppl"], 10 ** (-totals["logprob"] / (words - oovs + sentences)), rel_tol=1e-9)
    assert math.isclose(totals["ppl1"], 10 ** (-totals["logprob"] / (words - oovs)), rel_tol=1e-9)


def test_per_sentence_scores_sum_to_the_total(runner, model, data):
    result = run(runner, "eval", model, data["test"], "--per-sentence")
    assert result.exit_code == 0, result.stderr
    scores = [float(line) for line in result.stdout.splitlines()]
    assert len(scores) == len(data["test_lines"])
    assert all(score < 0 for score in scores)
    total = eval_json(runner, model, data["test"])["logprob"]
    assert math.isclose(sum(scores), total, abs_tol=1e-6 * len(scores) + 1e-9)


def test_stdin_scores_like_the_file(runner, model, data):
    result = run(runner, "eval", model, "-", "--json", input=data["test"].read_text())
    assert result.exit_code == 0, result.stderr
    from_stdin, from_file = json.loads(result.stdout), eval_json(runner, model, data["test"])
    text = run(runner, "eval", model, "-", input=data["test"].read_text())
    assert text.stdout.startswith("file -: ") and from_stdin["file"] == "-"  # one name in both forms
    assert from_stdin["sentences"] == from_file["sentences"]
    assert math.isclose(from_stdin["logprob"], from_file["logprob"], rel_tol=1e-9)


def test_gzip_scores_like_plain_text(runner, model, data, tmp_path):
    packed = tmp_path / "test.txt.gz"
    packed.write_bytes(gzip.compress(data["test"].read_bytes()))
    plain, zipped = eval_json(runner, model, data["test"]), eval_json(runner, model, packed)
    assert (zipped["sentences"], zipped["words"]) == (plain["sentences"], plain["words"])
    assert math.isclose(zipped["logprob"], plain["logprob"], rel_tol=1e-9)


def test_sentence_context_scores_each_line_alone(runner, model, data, tmp_path):
    first, second = data["test_lines"][0], data["test_lines"][1]
    pair = write_lines(tmp_path / "pair.txt", [first, second])
    alone = write_lines(tmp_path / "alone.txt", [second])

    def scores(path, context):
        result = run(runner, "eval", model, path, "--per-sentence", "--context", context)
        assert result.exit_code == 0, result.stderr
        return [float(line) for line in result.stdout.splitlines()]

    # Without carried state a line scores the same whatever came before it ...
    assert math.isclose(scores(pair, "sentence")[1], scores(alone, "sentence")[0], abs_tol=2e-6)
    # ... and the first line of a file starts from the same fresh state in both contexts.
    assert math.isclose(scores(pair, "stream")[0], scores(pair, "sentence")[0], abs_tol=2e-6)
    # The stream context carries the state of the first line into the second.
    assert abs(scores(pair, "stream")[1] - scores(pair, "sentence")[1]) > 1e-4


def test_oov_words_are_counted_and_left_out(runner, model, tmp_path):
    known = write_lines(tmp_path / "known.txt", ["the dog sees a cat ."])
    unknown = write_lines(tmp_path / "oov.txt", ["the dog zebraquux a cat ."])
    with_oov = eval_json(runner, model, unknown)
    assert (with_oov["sentences"], with_oov["words"], with_oov["oovs"]) == (1, 6, 1)
    # The OOV's probability is left out, and both perplexities count the five known words
    # only (ppl adds the one <eos>).
    assert math.isclose(with_oov["ppl1"], 10 ** (-with_oov["logprob"] / 5), rel_tol=1e-9)
    assert math.isclose(with_oov["ppl"], 10 ** (-with_oov["logprob"] / 6), rel_tol=1e-9)
    assert eval_json(runner, model, known)["oovs"] == 0


def test_invalid_utf8_is_replaced_with_a_warning_or_refused_with_strict(runner, model, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the dog sees a cat .\nthe cat \xff\xfe sees .\n")
    result = run(runner, "eval", model, bad, "--json")
    assert result.exit_code == 0, result.stderr
    totals = json.loads(result.stdout)
    assert totals["invalid_lines"] == 1 and totals["sentences"] == 2
    assert "invalid UTF-8" in result.stderr and "warning" in result.stderr

    strict = run(runner, "eval", model, bad, "--strict")
    assert strict.exit_code == 65
    line = one_error_line(strict.stderr)
    assert "invalid UTF-8" in line and "bad.txt:2:" in line
    assert strict.stdout == ""


def test_a_file_that_is_not_a_model_is_refused(runner, data, tmp_path):
    fake = tmp_path / "fake.pt"
    fake.write_text("hello\n", encoding="utf-8")
    result = run(runner, "eval", fake, data["test"])
    assert result.exit_code == 65
    assert "fake.pt" in one_error_line(result.stderr)


class _CreatesFile:
    """Unpickling this calls open(path, 'w'): a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's own note; see test_pipelines
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(runner, data, tmp_path, writer):
    victim = tmp_path / "pwned.txt"
    payload = {"format": "rnnlm-checkpoint", "version": 1, "model_config": _CreatesFile(victim)}
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        torch.save(payload, handle) if writer == "torch.save" else pickle.dump(payload, handle)
    assert not victim.exists()
    result = run(runner, "eval", evil, data["test"])
    assert result.exit_code == 65
    assert "refused" in result.stderr
    assert not victim.exists()


def test_traceback_only_with_debug(runner, data, tmp_path):
    fake = tmp_path / "fake.pt"
    fake.write_text("hello\n", encoding="utf-8")
    quiet = run(runner, "eval", fake, data["test"])
    assert quiet.exit_code == 65 and "Traceback" not in quiet.stderr
    loud = run(runner, "eval", fake, data["test"], env={"RNNLM_DEBUG": "1"})
    assert loud.exit_code == 65
    assert "Traceback" in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-1].startswith("rnnlm: error: ")


# ---------------------------------------------------------------- generate


def generate(runner, model, *args, input=None) -> str:
    result = run(runner, "generate", model, *args, input=input)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_same_seed_same_text_other_seed_differs(runner, model):
    first = generate(runner, model, "--seed", "1", "--max-tokens", "30")
    assert generate(runner, model, "--seed", "1", "--max-tokens", "30") == first
    assert generate(runner, model, "--seed", "2", "--max-tokens", "30") != first


def test_output_starts_with_the_prompt(runner, model):
    text = generate(runner, model, "--prompt", "the happy dog", "--seed", "1", "--max-tokens", "5")
    assert text.startswith("the happy dog") and text[len("the happy dog")] in " \n"  # a word or the line's end
    assert len(text.split()) > 3


def test_prompt_from_stdin(runner, model):
    text = generate(runner, model, "--prompt", "-", "--seed", "1", "--max-tokens", "5", input="some brave cat\n")
    assert text.startswith("some brave cat") and text[len("some brave cat")] in " \n"
    assert text == generate(runner, model, "--prompt", "some brave cat", "--seed", "1", "--max-tokens", "5")


def test_stop_at_eos_gives_one_line_per_sample(runner, model):
    text = generate(runner, model, "--stop-at-eos", "--num-samples", "3", "--seed", "1", "--max-tokens", "40")
    # A sample may end at once (an empty line), but none runs past its first line end.
    assert text.count("\n") == 3 and text.endswith("\n")


@pytest.mark.parametrize("max_tokens", [5, 17])
def test_max_tokens_is_the_number_of_tokens_drawn(runner, model, max_tokens):
    text = generate(runner, model, "--seed", "3", "--max-tokens", str(max_tokens))
    # Each drawn token is a word or a line end (<eos>); the output ends with one more line end.
    assert len(text.split()) + text.count("\n") - 1 == max_tokens


def test_temperature_zero_ignores_the_seed(runner, model):
    greedy = generate(runner, model, "--prompt", "the", "--temperature", "0", "--seed", "1", "--max-tokens", "12")
    assert generate(runner, model, "--prompt", "the", "--temperature", "0", "--seed", "2", "--max-tokens", "12") == greedy
    assert len(greedy.split()) > 1


@pytest.mark.parametrize("top_p", ["0", "1.5"])
def test_bad_top_p_is_a_usage_error(runner, model, top_p):
    result = run(runner, "generate", model, "--top-p", top_p)
    assert result.exit_code == 2
    assert "--top-p" in one_error_line(result.stderr)
    assert result.stdout == ""


# ---------------------------------------------------------------- tokenize


def test_save_tokenizer_holds_every_corpus_word(token_file, data):
    _, tokenizer_json = token_file
    saved = json.loads(tokenizer_json.read_text())
    assert saved["kind"] == "word"
    assert saved["pieces"][:2] == ["<eos>", "<unk>"]
    words = {word for line in data["train_lines"] for word in line.split()}
    assert set(saved["pieces"][2:]) == words


def test_print_ids_and_pieces(runner, token_file, data):
    _, tokenizer_json = token_file
    pieces = json.loads(tokenizer_json.read_text())["pieces"]
    ids = run(runner, "tokenize", data["test"], "--tokenizer", tokenizer_json, "--print", "ids")
    assert ids.exit_code == 0, ids.stderr
    id_lines = ids.stdout.splitlines()
    assert [" ".join(pieces[int(i)] for i in line.split()) for line in id_lines] == data["test_lines"]
    shown = run(runner, "tokenize", data["test"], "--tokenizer", tokenizer_json, "--print", "pieces")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines() == data["test_lines"]


def test_decode_round_trips_ids_to_text(runner, token_file, data):
    _, tokenizer_json = token_file
    ids = run(runner, "tokenize", data["test"], "--tokenizer", tokenizer_json, "--print", "ids")
    assert ids.exit_code == 0, ids.stderr
    text = run(runner, "tokenize", "-", "--tokenizer", tokenizer_json, "--decode", input=ids.stdout)
    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines() == data["test_lines"]


def test_decode_refuses_ids_outside_the_vocabulary(runner, token_file):
    _, tokenizer_json = token_file
    result = run(runner, "tokenize", "-", "--tokenizer", tokenizer_json, "--decode", input="3 99999\n")
    assert result.exit_code == 65
    assert "99999" in one_error_line(result.stderr)


def test_token_file_summary_counts_lines_words_and_tokens(runner, data, tmp_path):
    result = run(runner, "tokenize", data["test"], "--out", tmp_path / "t.tok")
    assert result.exit_code == 0, result.stderr
    words = sum(len(line.split()) for line in data["test_lines"])
    lines = len(data["test_lines"])
    assert f"{lines} lines, {words} words, {words + lines} tokens" in result.stdout


def test_tokenize_with_nothing_to_do_is_a_usage_error(runner, data):
    result = run(runner, "tokenize", data["train"])
    assert result.exit_code == 2
    assert "nothing to do" in one_error_line(result.stderr)


def test_tokenize_refuses_learning_options_beside_a_given_tokenizer(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\n")
    saved = tmp_path / "tok.json"
    assert CliRunner().invoke(app, ["tokenize", str(text), "--save-tokenizer", str(saved)]).exit_code == 0
    result = CliRunner().invoke(app, ["tokenize", str(text), "--tokenizer", str(saved), "--kind", "char",
                                      "--min-count", "2", "--print", "ids"])
    assert result.exit_code == 2 and "--kind, --min-count" in result.stderr, result.stderr
    ids = CliRunner().invoke(app, ["tokenize", str(text), "--tokenizer", str(saved), "--print", "ids"])
    # Ties in count are ordered alphabetically: "." 2, "dog" 3, "runs" 4, "the" 5.
    assert ids.exit_code == 0 and ids.stdout.split() == ["5", "3", "4", "2"], ids.stdout


def test_help_shows_defaults_written_in_brackets(runner):
    # Rich reads "[default: 10]" as a style tag unless it is escaped; the text must survive.
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Passes over the training tokens [default: 10]" in result.stdout


@pytest.mark.parametrize("value, rank", [(None, 0), ("0", 0), ("3", 3), ("x", 0)])
def test_the_launched_rank_is_torchruns_or_zero(monkeypatch, value, rank):
    from rnnlm_cli.cli.ui import launched_rank

    if value is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", value)
    assert launched_rank() == rank
