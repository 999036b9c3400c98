"""A backward model (``rnnlm train --reverse``) against its independent expectation: a forward
model trained, with the same seed and options, on the corpus with each line's words reversed by
hand. The two must have the same weights, and every score the backward model gives a text
must be the forward model's score of that text reversed by hand (per-word costs mapped back to
reading order), with nobody reversing anything for the backward model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import cli, make_lines, one_error_line, write_lines
from rnnlm_cli.errors import UsageError
from rnnlm_cli.store.checkpoint import load_checkpoint, load_model, save_checkpoint

TRAIN = ["--hidden", "16", "--emb", "8", "--layers", "1", "--bptt", "8", "--max-steps", "30", "--batch-size", "4",
         "--dropout", "0", "--lr", "0.01", "--device", "cpu", "--seed", "3"]


def reversed_words(line: str) -> str:
    return " ".join(line.split()[::-1])


def ok(*args, input=None):
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``back``: trained with --reverse on the corpus; ``hand``: forward on the corpus reversed by hand."""
    root = tmp_path_factory.mktemp("backward")
    lines = {"train": make_lines(200, seed=1), "valid": make_lines(10, seed=2),
             "test": make_lines(8, seed=3) + ["the zebra sees a dog ."]}
    files = {}
    for name, text in lines.items():
        files[name] = write_lines(root / f"{name}.txt", text)
        files[name + "_hand"] = write_lines(root / f"{name}.hand.txt", [reversed_words(line) for line in text])
    back, hand = root / "back" / "model.pt", root / "hand" / "model.pt"
    ok("train", files["train"], "--valid", files["valid"], "--reverse", "--out", back, *TRAIN)
    ok("train", files["train_hand"], "--valid", files["valid_hand"], "--out", hand, *TRAIN)
    return {"root": root, "back": back, "hand": hand, "lines": lines, **files}


def test_the_backward_model_is_the_forward_model_of_the_reversed_text(pair):
    back, hand = load_checkpoint(pair["back"]), load_checkpoint(pair["hand"])
    assert back.tokenizer == {**hand.tokenizer, "reverse": True}  # the checkpoint records the direction
    assert back.state_dict.keys() == hand.state_dict.keys()
    for name, weight in back.state_dict.items():
        assert torch.equal(weight, hand.state_dict[name]), name


@pytest.mark.parametrize("options", [[], ["--context", "sentence"], ["--per-sentence"],
                                     ["--debug", "1", "--context", "sentence"], ["--dynamic", "--dynamic-rule", "sgd"]],
                         ids=["stream", "sentence", "per-sentence", "debug-1", "dynamic"])
def test_eval_scores_the_text_as_the_forward_model_scores_it_reversed(pair, options):
    back = ok("eval", pair["back"], pair["test"], *options).stdout.splitlines()
    hand = ok("eval", pair["hand"], pair["test_hand"], *options).stdout.replace("test.hand.txt", "test.txt").splitlines()
    if options[:1] == ["--debug"]:  # the sentences are printed as given
        back = [line for line in back if line not in pair["lines"]["test"]]
        hand = [line for line in hand if reversed_words(line) not in pair["lines"]["test"]]
    assert back and back == hand


def test_json_totals_are_the_forward_models_of_the_reversed_text(pair):
    back = json.loads(ok("eval", pair["back"], pair["test"], "--json").stdout)
    hand = json.loads(ok("eval", pair["hand"], pair["test_hand"], "--json").stdout)
    assert back.pop("file").endswith("test.txt") and hand.pop("file").endswith("test.hand.txt")
    assert back["oovs"] == 1 and back == pytest.approx(hand, rel=1e-12)  # words summed in the other order


def test_debug_2_prints_each_word_in_reading_order_with_its_backward_score(pair):
    back = ok("eval", pair["back"], pair["test"], "--debug", "2", "--context", "sentence").stdout.split("\n\n")[0]
    hand = ok("eval", pair["hand"], pair["test_hand"], "--debug", "2", "--context", "sentence").stdout.split("\n\n")[0]
    back_lines, hand_lines = back.splitlines(), hand.splitlines()
    words = len(pair["lines"]["test"][0].split())
    assert back_lines[0] == pair["lines"]["test"][0]
    # Per word: the forward model's lines for the reversed words, in reverse; </s> the same.
    assert back_lines[1:1 + words] == hand_lines[1:1 + words][::-1]
    assert back_lines[1 + words] == hand_lines[1 + words]
    assert back_lines[-2:] == hand_lines[-2:]  # the sentence's totals
    assert back_lines[1].startswith(f"\tp( {pair['lines']['test'][0].split()[0]} | ")


def nbest(path, lines: list[tuple[str, str]]):
    return write_lines(path, [f"{key} {text}".rstrip() for key, text in lines])


@pytest.fixture
def hypotheses(pair, tmp_path):
    lists = [("u1-1", "the dog sees a cat ."), ("u1-2", "the dog zebra sees"), ("u1-3", ""),
             ("u2-1", "few cat helps . today")]
    return (nbest(tmp_path / "back.nbest", lists),
            nbest(tmp_path / "hand.nbest", [(key, reversed_words(text)) for key, text in lists]))


@pytest.mark.parametrize("options", [["--output", "sentence-scores"], ["--output", "sentence-scores", "--cost"], []],
                         ids=["log10", "cost", "rescored"])
def test_nbest_sentence_scores_are_the_forward_models_of_the_reversed_hypotheses(pair, hypotheses, options):
    back_list, hand_list = hypotheses
    back = ok("eval", pair["back"], "--nbest", back_list, "--nbest-format", "kaldi", *options).stdout.splitlines()
    hand = ok("eval", pair["hand"], "--nbest", hand_list, "--nbest-format", "kaldi", *options).stdout.splitlines()
    assert len(back) == 4
    if options:
        assert back == hand
    else:  # the rescored lists show each hypothesis as given
        assert [line.split()[:5] for line in back] == [line.split()[:5] for line in hand]


@pytest.mark.parametrize("carry", [[], ["--carry-state", "best"]], ids=["fresh", "carried"])
def test_token_scores_give_each_word_its_backward_cost_in_reading_order(pair, hypotheses, carry):
    back_list, hand_list = hypotheses
    back = ok("eval", pair["back"], "--nbest", back_list, "--nbest-format", "kaldi", "--output", "token-scores",
              *carry).stdout.splitlines()
    hand = ok("eval", pair["hand"], "--nbest", hand_list, "--nbest-format", "kaldi", "--output", "token-scores",
              *carry).stdout.splitlines()
    for back_line, hand_line in zip(back, hand, strict=True):
        key, *costs = back_line.split()
        hand_key, *hand_costs = hand_line.split()
        assert key == hand_key
        # Words map back to reading order; the sentence end's cost stays last.
        assert costs == hand_costs[:-1][::-1] + hand_costs[-1:]


def test_eval_of_a_backward_token_file_and_of_stdin(pair, tmp_path):
    token_file = tmp_path / "test.tok"
    ok("tokenize", pair["test"], "--tokenizer", pair["back"], "--out", token_file)
    expected = ok("eval", pair["hand"], pair["test_hand"], "--per-sentence").stdout
    assert ok("eval", pair["back"], token_file, "--per-sentence").stdout == expected
    text = pair["test"].read_text(encoding="utf-8")
    assert ok("eval", pair["back"], "-", "--per-sentence", input=text).stdout == expected


def test_tokenize_prints_a_backward_models_ids_and_decodes_them_in_reading_order(pair):
    ids = ok("tokenize", "-", "--tokenizer", pair["back"], "--print", "ids", input="the dog sees a cat .\n").stdout
    hand = ok("tokenize", "-", "--tokenizer", pair["hand"], "--print", "ids", input="the dog sees a cat .\n").stdout
    assert ids.split() == hand.split()[::-1]
    assert ok("tokenize", "-", "--tokenizer", pair["back"], "--decode", input=ids).stdout == "the dog sees a cat .\n"
    # --reverse makes a forward model's tokenizer read right to left.
    assert ok("tokenize", "-", "--tokenizer", pair["hand"], "--reverse", "--print", "ids",
              input="the dog sees a cat .\n").stdout == ids


def test_generate_writes_the_text_before_the_prompt(pair):
    prompt = "sees a cat ."
    options = ["--max-tokens", "12", "--seed", "5", "--stop-at-eos", "--temperature", "1.5"]
    back = ok("generate", pair["back"], "--prompt", prompt, *options).stdout
    hand = ok("generate", pair["hand"], "--prompt", reversed_words(prompt), *options).stdout
    assert back.endswith(prompt + "\n")
    assert back.split() == hand.split()[::-1]  # the same draws, in reading order


def test_a_per_word_mix_with_an_ngram_model_is_refused(pair):
    from rnnlm_cli.score.evaluate import TextScorer
    from rnnlm_cli.score.word_scoring import NgramMix

    model, tokenizer, _ = load_model(pair["back"], "cpu")
    with pytest.raises(UsageError, match="reads right to left"):
        TextScorer(model, tokenizer, "cpu", mix=NgramMix(object(), 0.5))


def test_an_old_checkpoint_without_the_key_reads_left_to_right(pair, tmp_path):
    model, tokenizer, checkpoint = load_model(pair["back"], "cpu")
    old = {key: value for key, value in checkpoint.tokenizer.items() if key != "reverse"}
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, old)
    assert load_model(path, "cpu")[1].reverse is False
    # The same weights read forward: the forward model's scores of the text as it stands.
    forward = ok("eval", path, pair["test"], "--per-sentence").stdout
    assert forward == ok("eval", pair["hand"], pair["test"], "--per-sentence").stdout


def test_a_continued_run_keeps_its_direction(pair, tmp_path):
    out = tmp_path / "run" / "model.pt"
    given = ["--valid", pair["valid"], "--out", out, *TRAIN]
    ok("train", pair["train"], "--reverse", *given)
    last = str(out).replace(".pt", ".last.pt")
    refused = cli("train", pair["train"], *given, "--resume", last)
    assert refused.exit_code == 2
    assert "reads each line right to left, this one left to right; give --reverse again" in one_error_line(refused.stderr)
    refused = cli("train", pair["train"], "--reverse", "--init-from", pair["hand"], "--out", tmp_path / "x.pt", *TRAIN)
    assert refused.exit_code == 2 and "a model keeps its direction" in one_error_line(refused.stderr)
    forward_tokens = str(pair["hand"]).replace(".pt", ".train.tok")
    refused = cli("train", forward_tokens, "--reverse", "--out", tmp_path / "y.pt", *TRAIN)
    assert refused.exit_code == 2 and "token file of lines read left to right" in one_error_line(refused.stderr)
    # --resume auto starts afresh instead, and says why; --init-from a backward model stays backward.
    afresh = ok("train", pair["train"], *given, "--resume", "auto", "--json")
    assert "learned with other --reverse" in afresh.stderr and '"direction": "left to right"' in afresh.stdout
    kept = ok("train", pair["train"], "--init-from", pair["back"], "--out", tmp_path / "z.pt", *TRAIN, "--json")
    assert '"direction": "right to left"' in kept.stdout and "read right to left" in kept.stderr
    assert load_checkpoint(tmp_path / "z.pt").tokenizer["reverse"] is True


def test_the_run_says_it_reads_right_to_left(pair):
    result = ok("train", pair["train"], "--valid", pair["valid"], "--reverse", "--out",
                pair["root"] / "said" / "model.pt", *TRAIN, "--json")
    assert "a backward model: each line is read right to left" in result.stderr
    assert '"direction": "right to left"' in result.stdout
    assert not math.isnan(float(result.stdout.split('"best_valid_ppl": ')[1].split(",")[0]))


def test_exports_say_the_direction(pair, tmp_path):
    onnx = pytest.importorskip("onnx")
    from rnnlm_cli.store.export import load_safetensors
    from rnnlm_cli.text.tokenizers import tokenizer_from_dict

    ok("export", pair["back"], "--format", "onnx", "--out", tmp_path / "back.onnx")
    ok("export", pair["hand"], "--format", "onnx", "--out", tmp_path / "hand.onnx")
    meta = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "back.onnx")).metadata_props}
    assert meta["direction"] == "right to left" and json.loads(meta["tokenizer"])["reverse"] is True
    hand = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "hand.onnx")).metadata_props}
    assert hand["direction"] == "left to right"
    ok("export", pair["back"], "--format", "safetensors", "--out", tmp_path / "back.safetensors")
    _, tokenizer = load_safetensors(str(tmp_path / "back.safetensors"))
    assert tokenizer_from_dict(tokenizer).reverse is True


def test_a_backward_model_is_not_promoted_over_a_forward_one(pair, tmp_path):
    target = tmp_path / "current.pt"
    target.write_bytes(pair["hand"].read_bytes())
    refused = cli("train", pair["train"], "--valid", pair["valid"], "--reverse", "--out", tmp_path / "new.pt",
                  "--promote-if-better", target, *TRAIN)
    assert refused.exit_code == 65
    assert "reads each line left to right, the new one right to left" in one_error_line(refused.stderr)
    assert target.read_bytes() == pair["hand"].read_bytes()
