"""`rnnlm generate` says which words of the prompt the model does not know."""

from typer.testing import CliRunner

from rnnlm_cli.cli import app


def generate(model, prompt):
    result = CliRunner().invoke(app, ["generate", str(model), "--prompt", prompt, "--max-tokens", "3",
                                      "--seed", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return result


def test_unknown_prompt_words_are_named_on_stderr(saved_model):
    path, _, tokenizer = saved_model
    known = tokenizer.piece(2)
    result = generate(path, f"{known} zebra quagga zebra")
    assert result.stdout.startswith(f"{known} zebra quagga zebra")  # the prompt is echoed as given
    assert "prompt: 3 word(s) not in the model's vocabulary, read as <unk>: zebra, quagga" in result.stderr


def test_a_known_prompt_draws_no_warning(saved_model):
    path, _, tokenizer = saved_model
    assert "vocabulary" not in generate(path, f"{tokenizer.piece(2)} {tokenizer.piece(3)}").stderr
