"""The adaptive softmax output layer, against torch's own module and the rest of the toolkit."""

import math

import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.device import cpu_bf16_kernels
from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.evaluate import evaluate_file
from rnnlm_cli.models.lm import build_model

CPU = torch.device("cpu")


def adaptive_model(vocab_size=40, cutoffs="5,15", seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab_size, emb=8, hidden=12, layers=1, dropout=0.0, adaptive_softmax=cutoffs)
    return build_model(config).eval()


def test_decode_gives_a_normalised_distribution_equal_to_torchs():
    model = adaptive_model()
    tokens = torch.randint(0, 40, (7, 3))
    with torch.no_grad():
        logprobs, _ = model(tokens)  # (T, B, V)
        features, _ = model.hidden_states(tokens)
    assert logprobs.shape == (7, 3, 40)
    assert torch.allclose(torch.logsumexp(logprobs, dim=-1), torch.zeros(7, 3), atol=1e-5)
    expected = model.decoder.log_prob(features.reshape(-1, features.shape[-1]))  # torch's own computation
    assert torch.allclose(logprobs.reshape(-1, 40), expected, atol=1e-6)


def test_target_scores_are_the_distribution_at_the_targets_without_computing_it():
    model = adaptive_model()
    tokens, targets = torch.randint(0, 40, (6, 2)), torch.tensor([[0, 39], [4, 5], [14, 15], [20, 1], [3, 30], [9, 10]])
    scores, _ = model(tokens, targets=targets)  # (T, B)
    full, _ = model(tokens)
    assert torch.allclose(scores, full.gather(2, targets.unsqueeze(2)).squeeze(2), atol=1e-5)


def test_target_scores_and_gradients_match_torchs_forward():
    from rnnlm_cli.models.lm import adaptive_target_logprobs
    softmax = adaptive_model().decoder.train()
    features = torch.randn(9, softmax.in_features, requires_grad=True)
    targets = torch.tensor([0, 4, 5, 14, 15, 39, 20, 2, 5])  # head, both clusters, their edges
    ours = adaptive_target_logprobs(softmax, features, targets)
    theirs = softmax(features, targets).output
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours_grads = torch.autograd.grad(ours.sum(), [features, *softmax.parameters()])
    theirs_grads = torch.autograd.grad(theirs.sum(), [features, *softmax.parameters()])
    for a, b in zip(ours_grads, theirs_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_cutoffs_are_checked():
    with pytest.raises(UsageError, match="increasing"):
        ModelConfig(vocab_size=40, adaptive_softmax="15,5")
    with pytest.raises(UsageError, match="increasing"):
        ModelConfig(vocab_size=40, adaptive_softmax="5,x")
    with pytest.raises(UsageError, match="--tied"):
        ModelConfig(vocab_size=40, adaptive_softmax="5,15", tied=True)
    with pytest.raises(UsageError, match="not below the vocabulary size"):
        build_model(ModelConfig(vocab_size=40, adaptive_softmax="5,40"))
    assert ModelConfig(vocab_size=40, adaptive_softmax=" 5, 15").cutoffs == (5, 15)
    assert ModelConfig(vocab_size=40).cutoffs == ()


def tail_widths(model):
    """The features each tail cluster's projection keeps."""
    return [cluster[0].out_features for cluster in model.decoder.tail]


def test_each_tail_cluster_is_half_as_wide_as_the_one_before():
    config = ModelConfig(vocab_size=400, emb=8, hidden=256, layers=1, adaptive_softmax="20,100,200")
    assert tail_widths(build_model(config)) == [128, 64, 32]
    wider = ModelConfig(vocab_size=400, emb=8, hidden=256, layers=1, adaptive_softmax="20,100,200", adaptive_div=4.0)
    assert tail_widths(build_model(wider)) == [64, 16, 4]
    # Where the ratio would leave the last cluster no feature, it is lowered until one is left.
    narrow = ModelConfig(vocab_size=400, emb=8, hidden=6, layers=1, adaptive_softmax="20,100,200,300")
    assert min(tail_widths(build_model(narrow))) >= 1
    with pytest.raises(UsageError, match="--adaptive-div"):
        ModelConfig(vocab_size=400, adaptive_div=0.5)


def test_a_model_saved_before_the_ratio_was_recorded_loads_with_torchs_four(tmp_path, word_tokenizer):
    from rnnlm_cli.store.checkpoint import load_checkpoint, save_checkpoint

    config = ModelConfig(vocab_size=word_tokenizer.vocab_size, emb=8, hidden=64, layers=1,
                         adaptive_softmax="4,8", adaptive_div=4.0)
    model = build_model(config)
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, word_tokenizer.to_dict())
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["adaptive_div"]  # as rnnlm 0.2 wrote it
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.model_config.adaptive_div == 4.0
    rebuilt = build_model(loaded.model_config)
    rebuilt.load_state_dict(loaded.state_dict)  # every tail weight has its saved shape
    assert tail_widths(rebuilt) == [16, 4]


def test_training_loss_is_the_cross_entropy_of_the_distribution():
    from rnnlm_cli.config import TrainConfig
    from rnnlm_cli.train.objective import Objective

    model = adaptive_model()
    model.train()
    x, y = torch.randint(0, 40, (5, 2)), torch.randint(0, 40, (5, 2))
    objective = Objective(TrainConfig())
    scores, _, raw, dropped = objective.forward(model, x, y, model.init_state(2))
    loss = objective.loss(model, scores, raw, dropped)
    logprobs, _ = model(x)
    expected = torch.nn.functional.nll_loss(logprobs.reshape(-1, 40), y.reshape(-1))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_scoring_matches_an_independent_forward_pass(tmp_path, word_tokenizer):
    vocab = word_tokenizer.vocab_size
    model = adaptive_model(vocab_size=vocab, cutoffs="3,6")
    lines = ["the dog runs .", "a cat sees the dog ."]
    text = tmp_path / "t.txt"
    text.write_text("\n".join(lines) + "\n")
    result = evaluate_file(model, word_tokenizer, str(text), CPU)
    ids = [t for line in lines for t in word_tokenizer.encode(line) + [word_tokenizer.eos_id]]
    inputs = torch.tensor([word_tokenizer.eos_id] + ids[:-1]).unsqueeze(1)
    with torch.no_grad():
        features, _ = model.hidden_states(inputs)
        logprobs = model.decoder.log_prob(features[:, 0])
    expected = float(logprobs[torch.arange(len(ids)), torch.tensor(ids)].sum()) / math.log(10)
    assert result.logprob == pytest.approx(expected, rel=1e-5)


def test_train_eval_generate_and_export_from_the_command_line(tmp_path, tiny_corpus):
    out = tmp_path / "m.pt"
    valid = tmp_path / "valid.txt"
    valid.write_text(tiny_corpus.read_text(encoding="utf-8"), encoding="utf-8")  # the same text, another file
    runner = CliRunner()
    train = runner.invoke(app, ["train", str(tiny_corpus), "--valid", str(valid), "--out", str(out),
                                "--adaptive-softmax", "3,6",
                                "--emb", "8", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--bptt", "5",
                                "--max-steps", "20"])
    assert train.exit_code == 0, train.stderr
    scored = runner.invoke(app, ["eval", str(out), str(tiny_corpus), "--json"])
    assert scored.exit_code == 0, scored.stderr
    assert 1.0 < __import__("json").loads(scored.stdout)["ppl"] < 100
    sampled = runner.invoke(app, ["generate", str(out), "--max-tokens", "5", "--seed", "1"])
    assert sampled.exit_code == 0 and sampled.stdout.strip(), sampled.stderr
    exported = runner.invoke(app, ["export", str(out), "--format", "safetensors", "--out", str(tmp_path / "m.st")])
    assert exported.exit_code == 0, exported.stderr
    tied = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(tmp_path / "t.pt"), "--adaptive-softmax", "3",
                               "--tied", "--max-steps", "1"])
    assert tied.exit_code == 2 and "cannot be --tied" in tied.stderr


def test_adaptive_div_is_an_option_of_train_kept_in_the_model(tmp_path, tiny_corpus):
    from rnnlm_cli.store.checkpoint import load_model

    out, valid = tmp_path / "m.pt", tmp_path / "valid.txt"
    valid.write_text(tiny_corpus.read_text(encoding="utf-8"), encoding="utf-8")
    common = ["--valid", str(valid), "--adaptive-softmax", "3,6", "--emb", "8", "--hidden", "16", "--layers", "1", "--batch-size", "2",
              "--bptt", "5", "--max-steps", "2"]
    train = CliRunner().invoke(app, ["train", str(tiny_corpus), "--out", str(out), "--adaptive-div", "4", *common])
    assert train.exit_code == 0, train.stderr
    model, _, checkpoint = load_model(str(out))
    assert checkpoint.model_config.adaptive_div == 4.0 and tail_widths(model) == [4, 1]
    # The shape is the model's: continuing it with another ratio is refused.
    again = CliRunner().invoke(app, ["train", str(tiny_corpus), "--valid", str(valid), "--out", str(tmp_path / "n.pt"),
                                     "--init-from", str(out), "--adaptive-div", "2", "--max-steps", "1"])
    assert again.exit_code == 2 and "--adaptive-div" in again.stderr


@pytest.mark.skipif(not cpu_bf16_kernels(), reason="this CPU's kernels cannot compute in bf16")
def test_runs_under_bf16_autocast_in_float32():
    # 40 rows: padded to 48 under CPU bf16, with targets in the head and both clusters.
    model = adaptive_model(vocab_size=400, cutoffs="50,150")
    tokens, targets = torch.randint(0, 400, (10, 4)), torch.randint(0, 400, (10, 4))
    with torch.no_grad():
        plain, _ = model(tokens, targets=targets)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, _ = model(tokens, targets=targets)
    assert mixed.dtype == torch.float32
    # bf16 projections keep 8 significant bits; the log-softmaxes run in float32: each
    # score within a few hundredths of a nat.
    assert torch.allclose(mixed, plain, atol=0.05)
