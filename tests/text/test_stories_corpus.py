"""The shipped stories corpus: its grammar, exact entropy, pairs and reproducibility."""

from __future__ import annotations

import importlib
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from rnnlm_cli.score.pairs import read_pairs

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
STORIES_DIR = SAMPLE_DIR / "stories"
MODULES = ("corpus_grammar", "make_corpus", "story_grammar", "make_stories")


@pytest.fixture(scope="module")
def m():
    """The four scripts' modules, imported as make_stories.py imports its siblings."""
    sys.path.insert(0, str(SAMPLE_DIR))
    try:
        yield type("Modules", (), {name: importlib.import_module(name) for name in MODULES})
    finally:
        sys.path.remove(str(SAMPLE_DIR))
        for name in MODULES:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def stories(m):
    rng = random.Random("pytest-stories")
    return [m.corpus_grammar.sample_from(m.story_grammar.STORY_GRAMMAR, m.story_grammar.START, rng)
            for _ in range(3000)]


def _parse(m, tokens):
    return m.corpus_grammar.parse(tokens, m.story_grammar.STORY_GRAMMAR, m.story_grammar.START)


def test_exact_entropy_agrees_with_monte_carlo(m, stories):
    exact = m.corpus_grammar.exact_entropy(m.story_grammar.STORY_GRAMMAR, m.story_grammar.START)
    rate, stderr = m.make_corpus.monte_carlo_entropy(stories)
    assert abs(rate - exact.nats_per_token) < 4 * stderr
    tokens = sum(len(s.tokens) + 1 for s in stories) / len(stories)
    assert tokens == pytest.approx(exact.tokens_per_sentence, rel=0.06)
    # A story's entropy is its name's, its item count's, and its items': nothing else is chosen.
    g = m.story_grammar.STORY_GRAMMAR
    item_count = -sum(p * math.log(p) for p, _ in g["ITEMS.0"])
    assert exact.nats_per_sentence > math.log(len(m.story_grammar.NAMES)) + item_count


def test_hand_computed_probability_of_a_one_sentence_story(m):
    sg = m.story_grammar
    sentence = "the dog runs .".split()
    one_item = 1 / sum(1 / n ** 2 for n in range(1, sg.MAX_ITEMS + 1))  # p(n) proportional to 1/n²
    p = 1 / len(sg.NAMES) * one_item * (1 - sg.NESTED_SHARE)
    count, logprob = _parse(m, ["story", "of", "iris", ":", *sentence, "end", "of", "iris", "."])
    assert count == 1
    assert logprob == pytest.approx(math.log(p) + m.corpus_grammar.parse(sentence)[1], rel=1e-12)


def test_every_story_parses_once_with_its_sampled_probability_and_another_closing_name_never(m, stories):
    names = m.story_grammar.NAMES
    for s in stories[:150]:
        count, logprob = _parse(m, s.tokens)
        assert count == 1, " ".join(s.tokens)
        assert logprob == pytest.approx(s.logprob, rel=1e-9)
        opened, closed, _ = m.make_stories.name_spans(s.tokens)[-1]  # the top-level story
        assert s.tokens[opened] == s.tokens[closed] and s.tokens[0] == "story"
        broken = list(s.tokens)
        broken[closed] = names[(names.index(s.tokens[closed]) + 1) % len(names)]
        assert _parse(m, broken) == (0, -math.inf)


def test_distances_between_names_reach_past_two_hundred_tokens_and_stories_nest(m, stories):
    spans = [span for s in stories for span in m.make_stories.name_spans(s.tokens)]
    distances = [closed - opened for opened, closed, _ in spans]
    assert min(distances) >= 8
    assert sum(d > 32 for d in distances) > 0.2 * len(distances)
    assert sum(d > 200 for d in distances) > 10
    assert any(holds for _, _, holds in spans)


def test_same_seed_gives_identical_files(m, tmp_path):
    sizes = ["--train-tokens", "3000", "--valid-tokens", "500", "--test-tokens", "500", "--pairs-per-bucket", "1",
             "--pairs-draws", "300"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert m.make_stories.main(["--seed", seed, "--out-dir", str(tmp_path / name), *sizes]) == 0
    for f in ("train.txt", "valid.txt", "test.txt", "ENTROPY.json", "ENTROPY.md", "pairs.tsv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a/train.txt").read_bytes() != (tmp_path / "c/train.txt").read_bytes()


def test_recorded_figures_match_the_script(m):
    report = json.loads((STORIES_DIR / "ENTROPY.json").read_text())
    exact = m.corpus_grammar.exact_entropy(m.story_grammar.STORY_GRAMMAR, m.story_grammar.START)
    for key, value in vars(exact).items():
        assert report["exact"][key] == pytest.approx(value, abs=1e-6), key
    assert f"{exact.nats_per_token:.4f}" in (STORIES_DIR / "ENTROPY.md").read_text()
    for split, counts in report["splits"].items():
        lines = (STORIES_DIR / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == counts["stories"]
        head = [" ".join(s.tokens) for s in m.make_stories.sample_split(report["seed"], split, 2000)]
        assert lines[:len(head)] == head  # the shipped text is what the seed regenerates
    assert sum(p.stat().st_size for p in STORIES_DIR.iterdir()) < 4_000_000


def test_shipped_pairs_are_labelled_by_the_grammar_and_their_distances_hold(m):
    pairs = list(read_pairs(str(STORIES_DIR / "pairs.tsv")))
    buckets = Counter((p.category, m.make_stories.bucket_of(p.distance)) for p in pairs)
    for bucket in m.make_stories.BUCKETS[1:-1]:  # the long buckets are full for both kinds
        assert buckets["recall", bucket] >= 30 and buckets["nested", bucket] >= 30, bucket
    for pair in random.Random(0).sample(pairs, 60):
        good, bad = pair.good.split(), pair.bad.split()
        (changed,) = [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]
        spans = {closed: (opened, holds) for opened, closed, holds in m.make_stories.name_spans(good)}
        opened, holds = spans[changed]
        assert pair.distance == changed - opened and (pair.category == "nested") == holds
        assert _parse(m, good)[0] == 1 and _parse(m, bad)[0] == 0
