"""The README's onnxruntime scorer, run as printed, agrees with ``rnnlm eval --context sentence --unk``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_scorer() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    scorers = [block for block in blocks if "onnxruntime" in block and "log_probs" in block]
    assert len(scorers) == 1, "the README shows one onnxruntime scorer"
    return scorers[0]


def test_the_snippet_is_short():
    assert len(readme_scorer().strip().splitlines()) <= 15


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_readme_onnx_scorer_gives_evals_sentence_score(tmp_path, cell):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\nthe dog sat on the log .\na cat saw the dog .\n" * 60)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "model.pt"), "--cell", cell,
                                  "--emb", "8", "--hidden", "12", "--layers", "2", "--batch-size", "4",
                                  "--max-steps", "20", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", str(tmp_path / "model.pt"), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output

    snippet = readme_scorer().replace("the cat sat on the mat", "the cat sat on the zebra")  # with an OOV
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = float(done.stdout.strip())

    (tmp_path / "one.txt").write_text("the cat sat on the zebra\n")
    scored = runner.invoke(app, ["eval", str(tmp_path / "model.pt"), str(tmp_path / "one.txt"), "--context", "sentence",
                                 "--unk", "--per-sentence", "--device", "cpu"])
    assert scored.exit_code == 0, scored.output
    assert printed == pytest.approx(float(scored.stdout.strip()), abs=1e-4)
