"""Hypotheses scored many at a time: the prefix tree against forward passes written here, the
plain batches against the tree, windows of lists keeping input order and a bounded look-ahead."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.score.arpa import read_arpa
from rnnlm_cli.score.evaluate import TextScorer
from rnnlm_cli.score.nbest import Hypothesis, NBestList
from rnnlm_cli.score.prefix_scoring import HypothesisScorer, PrefixTree
from rnnlm_cli.score.rescoring import rescore_nbest, rescore_windows
from rnnlm_cli.score.scoring_config import ScoringConfig
from rnnlm_cli.score.token_scoring import PieceEncoder
from rnnlm_cli.score.word_scoring import NgramMix
from rnnlm_cli.text.tokenizers import WordTokenizer

from conftest import tiny_model
from eval_support import V, WORDS, token_logprobs, write

CPU = torch.device("cpu")
TOKENIZER = WordTokenizer(WORDS)
IDS = {word: index for index, word in enumerate(WORDS)}
# Shared prefixes of several depths, a duplicate, an empty hypothesis, OOV words ("zebra",
# "moose": both <unk>, so "the zebra" and "the moose" share a whole path), and a hypothesis
# that is a prefix of another.
TEXTS = ["the dog runs .", "the dog runs", "the dog", "the cat runs .", "the zebra runs", "the moose runs",
         "", "dog the", "the dog runs .", "runs", "the cat cat cat cat cat runs ."]
UNIGRAM_ARPA = "\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0 </s>\n-99 <s>\n-0.5 the\n-0.8 dog\n-2.0 cat\n\n\\end\\\n"


def ids(text: str) -> list[int]:
    return [IDS.get(word, IDS["<unk>"]) for word in text.split()]


def forward_log10(model, texts: list[str]) -> list[float]:
    """Each text from a fresh state: its tokens' and the line end's log-softmax entries, summed, in log10."""
    return [sum(logprobs) / math.log(10) for logprobs in token_logprobs(model, [ids(t) for t in texts], carry=False)]


def attention_model() -> torch.nn.Module:
    torch.manual_seed(3)
    return build_model(ModelConfig(vocab_size=V, cell="lstm", emb=8, hidden=12, layers=1, dropout=0.0,
                                   attention=3)).eval()


@pytest.mark.parametrize("make", [lambda: tiny_model(V, seed=5), lambda: tiny_model(V, cell="gru", seed=6),
                                  attention_model], ids=["lstm", "gru", "attention"])
def test_the_prefix_tree_scores_each_hypothesis_as_its_own_forward_pass(make):
    model = make()
    scorer = HypothesisScorer(model, TOKENIZER, CPU, prefix="on")
    got = scorer.score(TEXTS)
    assert scorer.tree_calls == 1
    assert got == pytest.approx(forward_log10(model, TEXTS), abs=1e-6)
    # The plain length-sorted batches give the same numbers.
    assert HypothesisScorer(model, TOKENIZER, CPU, prefix="off").score(TEXTS) == pytest.approx(got, abs=1e-6)


def test_the_tree_keeps_each_distinct_prefix_once():
    encoder = PieceEncoder(TOKENIZER)
    texts = ["the dog runs", "the dog", "the cat", "the dog"]
    pieces = [encoder.encode(text, True, context=TOKENIZER.eos_id) for text in texts]
    tree = PrefixTree(pieces)
    # Predictions: the, dog, runs, </s> | </s> after "the dog" | cat, </s> -- the second
    # "the dog" adds nothing: 7 of the plain scorer's 4 + 3 + 3 + 3 = 13.
    assert tree.predictions == 7
    assert tree.share(pieces) == pytest.approx(7 / 13)
    assert [len(path) for path in tree.paths] == [4, 3, 3, 3]
    assert tree.paths[1] == tree.paths[3] and tree.paths[0][:2] == tree.paths[1][:2]
    assert [tree.tokens[node] for node in tree.paths[0]] == [2, 3, 5, 0]


def test_the_tree_mixes_with_an_ngram_model_per_word(tmp_path):
    ngram = read_arpa(str(write(tmp_path / "u.arpa", UNIGRAM_ARPA)))
    model = tiny_model(V, seed=5)
    tree = HypothesisScorer(model, TOKENIZER, CPU, prefix="on", mix=NgramMix(ngram, 0.25))
    got = tree.score(TEXTS)
    assert tree.tree_calls == 1
    expected = [totals.logprob for totals in TextScorer(model, TOKENIZER, CPU, mix=NgramMix(ngram, 0.25)).score(TEXTS)]
    assert got == pytest.approx(expected, abs=1e-6)
    # The mix changes the scores: the test would see a scorer that skipped it.
    assert min(abs(a - b) for a, b in zip(got, forward_log10(model, TEXTS)) if a != 0) > 1e-3


def lists_of(sizes: list[int]) -> list[NBestList]:
    words = ["the dog", "the cat runs", "dog", ""]
    return [NBestList(f"u{number}", [Hypothesis(f"u{number}", rank, tuple(words[(number + rank) % 4].split()),
                                                -float(rank), None, rank) for rank in range(1, size + 1)])
            for number, size in enumerate(sizes)]


@pytest.mark.parametrize("window", [1, 4, 7, 100])
def test_windows_keep_the_input_order_and_a_bounded_look_ahead(window):
    lists = lists_of([3, 1, 5, 2, 2, 8, 1, 1, 4])
    pulled = []

    def source():
        for nbest_list in lists:
            pulled.append(nbest_list.utterance)
            yield nbest_list

    calls = []

    def score_texts(texts):
        calls.append(texts)
        return [-float(len(text)) for text in texts]

    out = []
    for nbest_list, rows in rescore_windows(source(), score_texts, 1.0, 0.0, False, window):
        index = len(out)
        out.append(nbest_list.utterance)
        # Beyond this list, fewer than `window` hypotheses were read before the last list taken.
        later = [lists[i] for i in range(index + 1, len(pulled))]
        assert sum(len(nb.hypotheses) for nb in later[:-1]) < window
        assert [hyp.rank for hyp, _, _ in rows] == list(range(1, len(nbest_list.hypotheses) + 1))
        assert [lm for _, lm, _ in rows] == [-float(len(hyp.text)) for hyp in nbest_list.hypotheses]
    assert out == [nb.utterance for nb in lists]
    if window == 1:
        # Each list is handed on before the next is read.
        assert len(calls) == len(lists)
    if window == 100:
        assert len(calls) == 1 and calls[0] == ["the cat runs", "dog", "", "the dog"]


def test_windows_and_the_tree_do_not_change_what_rescoring_gives(tmp_path):
    lines = [f"u{n} {-n} 0 {len(t.split())} {t}".rstrip() for n in range(6) for t in TEXTS[n:n + 4]]
    path = write(tmp_path / "n.nbest", "\n".join(lines) + "\n")
    model = tiny_model(V, seed=5)

    def rows(**options):
        seen = []
        rescore_nbest(model, TOKENIZER, str(path), CPU, ScoringConfig(lm_weight=2.0), on_list=lambda _c, nb, r:
                      seen.append((nb.utterance, [(h.key, lm, total) for h, lm, total in r])), **options)
        return seen

    alone = rows(window=1, prefix="off")
    for options in ({"window": 5, "prefix": "on"}, {"window": 1000, "prefix": "on"}, {}):
        together = rows(**options)
        assert [(u, [k for k, _, _ in r]) for u, r in together] == [(u, [k for k, _, _ in r]) for u, r in alone]
        assert [x for _, r in together for _, lm, total in r for x in (lm, total)] == pytest.approx(
            [x for _, r in alone for _, lm, total in r for x in (lm, total)], abs=1e-6)
    expected = forward_log10(model, [t for n in range(6) for t in TEXTS[n:n + 4]])
    assert [lm for _, r in alone for _, lm, _ in r] == pytest.approx(expected, abs=1e-6)


def test_auto_takes_the_tree_for_many_sentences_that_share_prefixes():
    model = tiny_model(V, seed=5)
    # 200 texts "the dog" + four words spelling n in base 5: they share 40% of their tokens.
    shared = ["the dog " + " ".join(WORDS[2 + n // 5 ** k % 5] for k in range(4)) for n in range(200)]
    # 200 random 20-word texts share the first three or four words only: 88%.
    rng = random.Random(0)
    unrelated = [" ".join(rng.choice(WORDS[2:]) for _ in range(20)) for _ in range(200)]
    for texts, tree_calls in ((shared, 1), (shared[:20], 0)):
        scorer = HypothesisScorer(model, TOKENIZER, CPU)
        got = scorer.score(texts)
        assert scorer.tree_calls == tree_calls
        assert got == pytest.approx(forward_log10(model, texts), abs=1e-6)
    scorer = HypothesisScorer(model, TOKENIZER, CPU)
    scorer.score(unrelated)
    assert scorer.tree_calls == 0
