"""Embeddings from a vectors file, freezing them, and synonym pairs."""

import pytest
import torch

from rnnlm_cli.store.checkpoint import load_model
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.pretrained import freeze_embeddings, load_embeddings, load_synonyms
from rnnlm_cli.text.tokenizers import WordTokenizer
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.run import run_training

TOKENIZER = WordTokenizer(["<unk>", "<eos>", "cat", "dog", "sat"])


def test_vectors_of_vocabulary_words_are_copied_and_coverage_reported(tmp_path):
    vectors = tmp_path / "v.txt"
    vectors.write_text("3 2\ncat 1.5 -2\nbird 9 9\nsat 0.25 4\n")
    weight = torch.zeros(TOKENIZER.vocab_size, 2)
    note = load_embeddings(str(vectors), TOKENIZER, weight)
    vocab = TOKENIZER.vocab_size
    assert note == f"initialised 2 of {vocab} vocabulary entries ({200 / vocab:.1f}%) from {vectors}"
    cat, sat = TOKENIZER.encode("cat sat")[:2]
    assert weight[cat].tolist() == [1.5, -2.0] and weight[sat].tolist() == [0.25, 4.0]
    assert weight.abs().sum() == pytest.approx(1.5 + 2 + 0.25 + 4)


def test_a_dimension_other_than_emb_is_refused(tmp_path):
    vectors = tmp_path / "v.txt"
    vectors.write_text("cat 1 2 3\n")
    with pytest.raises(UsageError, match="3 dimensions but --emb is 2"):
        load_embeddings(str(vectors), TOKENIZER, torch.zeros(TOKENIZER.vocab_size, 2))


def test_freezing_tied_embeddings_is_refused():
    with pytest.raises(UsageError, match="--tied"):
        freeze_embeddings(build_model(ModelConfig(vocab_size=5, emb=4, hidden=4, tied=True)))


def test_synonym_pairs_outside_the_vocabulary_are_skipped_and_counted(tmp_path):
    synonyms = tmp_path / "s.txt"
    synonyms.write_text("cat dog\ncat bird\n\nsat dog\n")
    pairs, note = load_synonyms(str(synonyms), TOKENIZER)
    cat, dog, sat = TOKENIZER.encode("cat dog sat")[:3]
    assert pairs.tolist() == [[cat, dog], [sat, dog]]
    assert note == f"synonyms: 2 of 3 pairs in {synonyms} have both words in the vocabulary"


def test_frozen_pretrained_embeddings_survive_training(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 60)
    vectors = tmp_path / "v.txt"
    vectors.write_text("cat 1 2 3 4\ndog 4 3 2 1\n")
    notes = []
    job = TrainJob(corpus=str(corpus), out=str(tmp_path / "m.pt"),
                   model=ModelConfig(vocab_size=2, emb=4, hidden=8, layers=1),
                   train=TrainConfig(batch_size=2, bptt=5, max_steps=5, device="cpu", lr=0.1,
                                     embeddings=str(vectors), freeze_embeddings=True))
    run_training(job, notes=notes)
    model, tokenizer, _ = load_model(tmp_path / "m.pt")
    assert any(n.startswith("initialised 2 of ") for n in notes), notes
    cat, dog = tokenizer.encode("cat dog")[:2]
    assert model.embedding.weight[cat].tolist() == [1, 2, 3, 4]
    assert model.embedding.weight[dog].tolist() == [4, 3, 2, 1]
