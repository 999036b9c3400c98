"""Promotion decisions with hand-made models whose validation order is known, on the file system:
better replaces (keeping mode and owner), worse and equal leave the target, the lock, links."""

from __future__ import annotations

import fcntl
import math
import os
import re
import stat

import numpy as np
import pytest
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import LockedError, OutputError, TokenizerMismatchError
from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.train.promote import check_promotable, promote_if_better, resolve_target

from conftest import tiny_model

CPU = torch.device("cpu")
CONFIG = TrainConfig(eval_batch_size=2, bptt=8)
TARGET_TOKEN = 3
VALID = np.full(64, TARGET_TOKEN, dtype=np.int64)  # a text of one repeated token


def save(path, tokenizer, bias=0.0, seed=0):
    """A tiny model whose preference for the valid text's token is set by hand: a higher
    ``bias`` on it is a lower validation loss."""
    model = tiny_model(tokenizer.vocab_size, seed=seed)
    with torch.no_grad():
        model.decoder.bias[TARGET_TOKEN] += bias
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, tokenizer.to_dict())
    return path


def fake_validation(monkeypatch, fake):
    """Validation losses from ``fake``, wherever promotion looks stream_loss up."""
    from rnnlm_cli.train import promote as promote_module, validation

    monkeypatch.setattr(validation, "stream_loss", fake)
    if hasattr(promote_module, "stream_loss"):
        monkeypatch.setattr(promote_module, "stream_loss", fake)


def promote(candidate, target, **kwargs):
    return promote_if_better(str(candidate), str(target), VALID, CONFIG, CPU, **kwargs)


@pytest.fixture
def models(tmp_path, word_tokenizer):
    """weak, medium and strong: the same network with the valid token pushed down, left, pushed up."""
    return {name: save(tmp_path / "cand" / f"{name}.pt", word_tokenizer, bias)
            for name, bias in (("weak", -6.0), ("medium", 0.0), ("strong", 6.0))}


def test_a_missing_target_is_promoted_into_a_new_folder(tmp_path, models):
    target = tmp_path / "prod" / "v1" / "model.pt"
    promoted, message = promote(models["weak"], target)
    assert promoted is True
    assert "did not exist" in message
    assert target.read_bytes() == models["weak"].read_bytes()


def test_a_better_model_replaces_the_target_keeping_its_mode_and_owner(tmp_path, models):
    target = tmp_path / "prod" / "model.pt"
    target.parent.mkdir()
    target.write_bytes(models["medium"].read_bytes())
    os.chmod(target, 0o640)
    if os.geteuid() == 0:
        os.chown(target, 12345, 23456)  # only root may give a file away; the promoted file keeps its owner
    owner = (target.stat().st_uid, target.stat().st_gid)
    promoted, message = promote(models["strong"], target)
    assert promoted is True
    assert message.startswith("promoted: valid ppl ") and "replaced" in message
    assert target.read_bytes() == models["strong"].read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert (target.stat().st_uid, target.stat().st_gid) == owner
    # The lock beside the target was taken and released cleanly (removed), and no temp is left.
    assert sorted(os.listdir(target.parent)) == ["model.pt"]


@pytest.mark.parametrize("candidate, in_place", [("weak", "medium"), ("medium", "strong"), ("medium", "medium")])
def test_a_worse_or_equal_model_leaves_the_target(tmp_path, models, candidate, in_place):
    target = tmp_path / "model.pt"
    target.write_bytes(models[in_place].read_bytes())
    before = target.stat()
    promoted, message = promote(models[candidate], target)
    assert promoted is False
    assert "is not better than" in message and "unchanged" in message
    assert target.read_bytes() == models[in_place].read_bytes()
    assert target.stat().st_ino == before.st_ino and target.stat().st_mtime_ns == before.st_mtime_ns


def test_a_non_finite_new_loss_is_never_promoted(tmp_path, models, monkeypatch):
    fake_validation(monkeypatch, lambda *args, **kwargs: float("nan"))
    target = tmp_path / "prod" / "model.pt"
    promoted, message = promote(models["strong"], target)
    assert promoted is False and "not finite" in message
    assert not (tmp_path / "prod").exists()  # nothing created, not even the folder or the lock


def test_the_in_place_model_is_scored_again_under_the_lock(tmp_path, models, monkeypatch):
    from rnnlm_cli.train.validation import stream_loss as real

    target = tmp_path / "model.pt"
    target.write_bytes(models["medium"].read_bytes())
    scored = []

    def recording(model, tokens, batch_size, bptt, device):
        held = (tmp_path / ".model.pt.rnnlm.lock").exists() and (tmp_path / ".model.pt.rnnlm.lock").read_text()
        scored.append(held)
        return real(model, tokens, batch_size, bptt, device)

    fake_validation(monkeypatch, recording)
    assert promote(models["strong"], target)[0] is True
    # First the candidate, before the lock; then the model in place, with our pid in the lock.
    assert scored == [False, f"{os.getpid()}\n"]


def test_a_target_locked_by_another_promoter_is_left_alone(tmp_path, models):
    target = tmp_path / "model.pt"
    target.write_bytes(models["weak"].read_bytes())
    fd = os.open(tmp_path / ".model.pt.rnnlm.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        with pytest.raises(LockedError, match="4242") as caught:
            promote(models["strong"], target, wait_seconds=0.0)
        assert caught.value.exit_code == 75
    finally:
        os.close(fd)
    assert target.read_bytes() == models["weak"].read_bytes()


def test_a_stop_while_awaiting_the_lock_ends_as_a_stop(tmp_path, models):
    target = tmp_path / "model.pt"
    target.write_bytes(models["weak"].read_bytes())
    asked = []

    def stop_after_the_first_question():
        asked.append(True)
        return len(asked) > 1

    fd = os.open(tmp_path / ".model.pt.rnnlm.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        promoted, message = promote(models["strong"], target, wait_seconds=30.0,
                                    should_stop=stop_after_the_first_question)
    finally:
        os.close(fd)
    assert promoted is None and "stopped" in message
    assert target.read_bytes() == models["weak"].read_bytes()


def test_a_stop_before_the_lock_leaves_a_missing_target_missing(tmp_path, models):
    target = tmp_path / "model.pt"
    promoted, message = promote(models["strong"], target, should_stop=lambda: True)
    assert promoted is None and "unchanged" in message
    assert not target.exists()


def test_a_symlinked_target_keeps_its_link_and_its_referent_is_replaced(tmp_path, models):
    (tmp_path / "models").mkdir()
    referent = tmp_path / "models" / "v3.pt"
    referent.write_bytes(models["medium"].read_bytes())
    (tmp_path / "current.pt").symlink_to("models/v3.pt")
    (tmp_path / "latest.pt").symlink_to("current.pt")  # a chain of two links
    assert resolve_target(str(tmp_path / "latest.pt")) == str(referent)
    promoted, _ = promote(models["strong"], tmp_path / "latest.pt")
    assert promoted is True
    assert os.readlink(tmp_path / "current.pt") == "models/v3.pt"
    assert os.readlink(tmp_path / "latest.pt") == "current.pt"
    assert referent.read_bytes() == models["strong"].read_bytes()
    assert not (tmp_path / ".latest.pt.rnnlm.lock").exists() and not (tmp_path / ".current.pt.rnnlm.lock").exists()


def test_a_link_planted_by_another_user_is_not_followed(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving a link to another user needs root")
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"theirs")
    link = tmp_path / "model.pt"
    link.symlink_to(victim)
    os.lchown(link, 12345, 12345)
    with pytest.raises(OutputError, match="belongs to another user") as caught:
        resolve_target(str(link))
    assert caught.value.exit_code == 73


def test_resolve_target_of_a_plain_or_missing_path_is_its_real_path(tmp_path):
    assert resolve_target(str(tmp_path / "a" / ".." / "m.pt")) == str(tmp_path / "m.pt")


def test_a_target_of_another_tokenizer_is_refused(tmp_path, models, word_tokenizer):
    from rnnlm_cli.text.tokenizers import tokenizer_from_dict

    byte_tokenizer = tokenizer_from_dict({"kind": "byte", "version": 1})
    target = save(tmp_path / "prod" / "model.pt", byte_tokenizer, bias=-6.0)
    before = target.read_bytes()
    with pytest.raises(TokenizerMismatchError, match="another tokenizer") as caught:
        check_promotable(str(target), word_tokenizer)
    assert caught.value.exit_code == 65
    with pytest.raises(TokenizerMismatchError):
        promote(models["strong"], target)
    assert target.read_bytes() == before
    check_promotable(str(target), byte_tokenizer)  # the same tokenizer: comparable
    check_promotable(str(tmp_path / "missing.pt"), word_tokenizer)  # nothing in place: nothing to compare


def biased(path, pieces, probabilities):
    """A model over ``pieces`` that gives every position the same distribution, ``probabilities``
    (its decoder weights zero, its biases their logs): its scores are known by hand."""
    from rnnlm_cli.text.tokenizers import WordTokenizer

    tokenizer = WordTokenizer(pieces)
    model = tiny_model(len(pieces))
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.copy_(torch.log(torch.tensor(probabilities, dtype=torch.float32)))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, tokenizer.to_dict())
    return tokenizer


TEXT_WORDS = "a b c d".split()


def text_of(tokenizer) -> np.ndarray:
    """"a b c d" and a line end, 40 times: targets a, the line end and b, c, d in 1:1:3."""
    return np.array([0, *([tokenizer.index[word] for word in TEXT_WORDS] + [0]) * 40], dtype=np.int64)


def promote_across(tmp_path, old_probabilities, new_probabilities):
    old = biased(tmp_path / "prod" / "model.pt", ["<eos>", "<unk>", "a"], old_probabilities)
    new = biased(tmp_path / "cand" / "model.pt", ["<eos>", "<unk>", "a", "b", "c", "d"], new_probabilities)
    result = promote_if_better(str(tmp_path / "cand" / "model.pt"), str(tmp_path / "prod" / "model.pt"),
                               text_of(new), CONFIG, CPU)
    return old, new, result


def expected_ppl(probabilities: dict[str, float]) -> float:
    """Perplexity over targets a, the line end and "another word" in the ratio 1:1:3."""
    return math.exp(-(math.log(probabilities["a"]) + math.log(probabilities["eos"])
                      + 3 * math.log(probabilities["other"])) / 5)


def test_a_smaller_vocabulary_does_not_win_by_guessing_unk(tmp_path):
    """The model in place knows only "a": b, c and d are <unk> to it, which it gives 0.8. On its
    own reading of the text it scores perplexity 2.87, against 5 for the new model, uniform
    over five entries: on raw perplexity the smaller vocabulary would win. Compared on the
    same events (a, the line end, and b, c, d, <unk> as one), the new model gives 0.2, 0.2 and
    0.6: perplexity 2.59 against 2.87, and it replaces the old one."""
    old, new, (promoted, message) = promote_across(tmp_path, [0.1, 0.8, 0.1], [0.2, 1e-30, 0.2, 0.2, 0.2, 0.2])
    raw_old = math.exp(-(2 * math.log(0.1) + 3 * math.log(0.8)) / 5)
    assert raw_old == pytest.approx(2.87, abs=0.01) and raw_old < 5
    assert promoted, message
    before, after = (float(x) for x in re.search(r"valid ppl ([\d.]+) -> ([\d.]+)", message).groups())
    assert before == pytest.approx(expected_ppl({"a": 0.1, "eos": 0.1, "other": 0.8}), abs=1e-3)
    assert after == pytest.approx(expected_ppl({"a": 0.2, "eos": 0.2, "other": 0.6}), abs=1e-3)
    assert "over the events both vocabularies name (3 and 6 entries" in message


def test_the_larger_vocabulary_loses_when_it_is_worse_on_the_same_events(tmp_path):
    """New: a 0.3, line end 0.5, b, c, d 0.2 together (ppl 3.84); old: 0.2, 0.2, 0.6 (ppl 2.59)."""
    _, _, (promoted, message) = promote_across(tmp_path, [0.2, 0.6, 0.2], [0.5, 1e-30, 0.3, 0.1, 0.05, 0.05])
    assert promoted is False, message
    before, after = (float(x) for x in re.search(r"ppl ([\d.]+) is not better than .*'s ([\d.]+)", message).groups())
    assert before == pytest.approx(expected_ppl({"a": 0.3, "eos": 0.5, "other": 0.2}), abs=1e-3)
    assert after == pytest.approx(expected_ppl({"a": 0.2, "eos": 0.2, "other": 0.6}), abs=1e-3)


def test_check_promotable_accepts_another_word_vocabulary_but_not_another_kind(tmp_path, word_tokenizer):
    from rnnlm_cli.text.tokenizers import ByteTokenizer, WordTokenizer

    target = str(tmp_path / "prod" / "model.pt")
    old = biased(tmp_path / "prod" / "model.pt", ["<eos>", "<unk>", "a"], [0.1, 0.8, 0.1])
    assert check_promotable(target, word_tokenizer) is True  # compared across vocabularies
    assert check_promotable(target, old) is False  # the same vocabulary: compared as ever
    with pytest.raises(TokenizerMismatchError):
        check_promotable(target, ByteTokenizer())
    # A recogniser's symbol table keeps its ids: a model of another vocabulary never replaces it.
    table = WordTokenizer(["<eos>", "<unk>", "a"], symbols={"layout": "kaldi", "entries": [["a", 1]]})
    save_checkpoint(tmp_path / "asr" / "model.pt", tiny_model(3), table.to_dict())
    with pytest.raises(TokenizerMismatchError):
        check_promotable(str(tmp_path / "asr" / "model.pt"), word_tokenizer)
