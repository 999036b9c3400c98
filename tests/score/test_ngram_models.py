"""The n-gram backends of --mix-lm: which one loads, and KenLM agreeing with the ARPA reader.

The agreement tests need the kenlm module (``pip install 'rnnlm[kenlm]'``) and skip without it.
"""

from __future__ import annotations

import importlib.util
import random

import pytest

from rnnlm_cli.errors import UsageError
from rnnlm_cli.score import ngram_models
from rnnlm_cli.score.arpa import ArpaModel, read_arpa
from rnnlm_cli.score.ngram_models import KenlmModel, load_ngram

# A trigram model exercising every branch of the back-off recursion: listed trigrams,
# bigrams reached through a trigram context's back-off, contexts without a back-off
# weight, and <unk>.
TRIGRAM = """\\data\\
ngram 1=6
ngram 2=8
ngram 3=4

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.30
-1.5\t<unk>
-0.7\ta\t-0.20
-0.9\tb\t-0.25
-1.1\tc\t-0.10

\\2-grams:
-0.40\t<s> a\t-0.15
-0.60\t<s> b
-0.30\ta b\t-0.05
-0.80\ta c
-0.50\tb a\t-0.12
-0.45\tb </s>
-0.35\tc </s>
-0.90\tc a

\\3-grams:
-0.20\t<s> a b
-0.25\ta b a
-0.15\tb a c
-0.30\t<s> a c

\\end\\
"""
WORDS = ["a", "b", "c", "zzz", "</s>"]


@pytest.fixture
def arpa(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(TRIGRAM, encoding="utf-8")
    return str(path)


def test_without_kenlm_auto_reads_arpa_and_binaries_are_refused(arpa, tmp_path, monkeypatch):
    monkeypatch.setattr(ngram_models, "kenlm_module", lambda: None)
    assert isinstance(load_ngram(arpa), ArpaModel)
    with pytest.raises(UsageError, match="pip install 'rnnlm\\[kenlm\\]'"):
        load_ngram(arpa, "kenlm")
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0\0")
    with pytest.raises(UsageError, match="KenLM binary model needs the kenlm module"):
        load_ngram(str(binary))
    with pytest.raises(UsageError, match="only the kenlm backend reads it"):
        load_ngram(str(binary), "python")
    with pytest.raises(UsageError, match="must be one of auto, kenlm, python"):
        load_ngram(arpa, "srilm")


needs_kenlm = pytest.mark.skipif(importlib.util.find_spec("kenlm") is None,
                                 reason="the kenlm module is an optional extra: pip install 'rnnlm[kenlm]'")


@needs_kenlm
def test_kenlm_and_the_arpa_reader_agree_on_every_word(arpa):
    ours, theirs = read_arpa(arpa), load_ngram(arpa, "kenlm")
    assert isinstance(theirs, KenlmModel) and theirs.order == ours.order == 3
    rng = random.Random(0)
    for _ in range(300):
        # Random contexts, in random order: the state KenLM keeps from call to call must
        # never leak into a context it does not belong to.
        length = rng.randrange(0, 4)
        context = (["<s>"] if rng.random() < 0.5 else []) + [rng.choice(WORDS[:4]) for _ in range(length)]
        word = rng.choice(WORDS)
        assert theirs.logprob(word, context) == pytest.approx(ours.logprob(word, context), abs=1e-6), (word, context)


@needs_kenlm
def test_kenlm_agrees_along_lines_as_the_mix_reads_them(arpa):
    ours, theirs = read_arpa(arpa), load_ngram(arpa, "kenlm")
    rng = random.Random(1)
    for _ in range(50):
        line = [rng.choice(WORDS[:4]) for _ in range(rng.randrange(0, 8))]
        history = ["<s>"]
        for word in [*line, "</s>"]:
            assert theirs.logprob(word, history) == pytest.approx(ours.logprob(word, history), abs=1e-6)
            history.append(word)
            del history[:-2]
        assert theirs.sentence_logprobs(line) == pytest.approx(ours.sentence_logprobs(line), abs=1e-6)


@needs_kenlm
def test_eval_mixes_the_same_with_either_backend(arpa, saved_model, tiny_corpus):
    import json

    from typer.testing import CliRunner

    from rnnlm_cli.cli import app

    path, _, _ = saved_model
    results = {}
    for backend in ("python", "kenlm"):
        result = CliRunner().invoke(app, ["eval", str(path), str(tiny_corpus), "--mix-lm", arpa, "--lambda", "0.6",
                                          "--mix-lm-backend", backend, "--json", "--device", "cpu"],
                                    env={"RNNLM_DEBUG": None})
        assert result.exit_code == 0, result.stderr
        results[backend] = json.loads(result.stdout)
    assert results["kenlm"]["logprob"] == pytest.approx(results["python"]["logprob"], abs=1e-4)


@needs_kenlm
def test_without_unk_kenlm_gives_unknown_words_zero_probability_as_the_arpa_reader(tmp_path):
    path = tmp_path / "no-unk.arpa"
    path.write_text(TRIGRAM.replace("ngram 1=6", "ngram 1=5").replace("-1.5\t<unk>\n", ""), encoding="utf-8")
    ours, theirs = read_arpa(str(path)), load_ngram(str(path), "kenlm")
    assert not ours.has_unk
    for context in (["<s>"], ["<s>", "a"], ["zzz", "b"], ["a", "zzz"]):
        for word in WORDS:
            assert theirs.logprob(word, context) == pytest.approx(ours.logprob(word, context), abs=1e-6)
    assert theirs.logprob("zzz", ["<s>"]) == float("-inf")
    assert theirs.sentence_logprobs(["a", "zzz", "b"]) == pytest.approx(ours.sentence_logprobs(["a", "zzz", "b"]))


@needs_kenlm
def test_auto_falls_back_to_the_arpa_reader_for_a_file_kenlm_cannot_parse(tmp_path):
    path = tmp_path / "spaces.arpa"
    path.write_text(TRIGRAM.replace("\t", " "), encoding="utf-8")  # ARPA allows any whitespace; KenLM wants tabs
    notes = []
    model = load_ngram(str(path), note=notes.append)
    assert isinstance(model, ArpaModel) and len(notes) == 1 and "read by the ARPA reader instead" in notes[0]
    from rnnlm_cli.errors import DataError

    with pytest.raises(DataError, match="KenLM cannot read it"):
        load_ngram(str(path), "kenlm")
