"""Minimal pairs (rnnlm_cli.score.pairs): reading pair files, distance buckets, the tallies
against sentence scores worked out by hand, and the shipped sample_data/pairs.tsv against
the grammar that made it."""

from __future__ import annotations

import gzip
import importlib
import math
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from eval_support import WORDS, V, token_logprobs, uniform
from rnnlm_cli.errors import DataError
from rnnlm_cli.score import pairs as pairs_module
from rnnlm_cli.score.pairs import Bucket, Pair, distance_bucket, evaluate_pairs, read_pairs
from rnnlm_cli.score.scoring_config import ScoringConfig
from rnnlm_cli.text.tokenizers import WordTokenizer

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
CPU = torch.device("cpu")


# ---------------------------------------------------------------- reading


def test_read_pairs_skips_comments_and_blanks_and_reads_optional_columns(tmp_path):
    text = ("# good\tbad\tcategory\tdistance\n"
            "\n"
            "the dog runs\tthe dog run\tagreement\t1\r\n"
            "  the cats run  \tthe cats runs\n"
            "a b\tb a\tword order\n"
            "a b\tb a\t\t12\n"
            "   \n"
            "a\tb\tx\t0\n")
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    expected = [Pair("the dog runs", "the dog run", "agreement", 1), Pair("the cats run", "the cats runs"),
                Pair("a b", "b a", "word order"), Pair("a b", "b a", None, 12), Pair("a", "b", "x", 0)]
    assert list(read_pairs(str(path))) == expected
    packed = tmp_path / "pairs.tsv.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    assert list(read_pairs(str(packed))) == expected


@pytest.mark.parametrize("line, message", [
    ("only one field", "got 1 tab-separated field"),
    ("a\tb\tc\t3\textra", "got 5 tab-separated field"),
    ("\tbad", "empty good sentence"),
    ("good\t  \tc", "empty bad sentence"),
    ("good\tbad\tc\tfar", "distance must be a non-negative integer, got 'far'"),
    ("good\tbad\tc\t-2", "distance must be a non-negative integer, got '-2'"),
    ("good\tbad\tc\t2.5", "distance must be a non-negative integer, got '2.5'"),
])
def test_a_malformed_line_is_a_data_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"# header\na\tb\n\n{line}\nc\td\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        list(read_pairs(str(path)))
    assert str(caught.value).startswith(f"{path}:4: ")
    assert message in str(caught.value)


# ---------------------------------------------------------------- buckets


@pytest.mark.parametrize("distance, low, high, label", [
    (0, 0, 0, "0"), (1, 1, 1, "1"), (2, 2, 2, "2"), (3, 3, 4, "3-4"), (4, 3, 4, "3-4"), (5, 5, 8, "5-8"),
    (8, 5, 8, "5-8"), (9, 9, 16, "9-16"), (16, 9, 16, "9-16"), (17, 17, 32, "17-32"), (1000, 513, 1024, "513-1024"),
])
def test_distance_buckets_end_at_powers_of_two(distance, low, high, label):
    bucket = distance_bucket(distance)
    assert (bucket.low, bucket.high, bucket.label) == (low, high, label)


def test_a_negative_distance_has_no_bucket():
    with pytest.raises(ValueError):
        distance_bucket(-1)
    with pytest.raises(ValueError):
        Pair("a", "b", distance=-1)


# ---------------------------------------------------------------- tallies against hand-computed scores

# (good, bad, category, distance, the distance's bucket as this test names it)
CASES = [
    ("the dog runs .", "the dog dog .", "agreement", 1, "1"),
    ("the cat runs .", "the cat the .", "agreement", 2, "2"),
    ("the dog runs .", "the cat runs .", "agreement", 3, "3-4"),
    ("the cat runs .", "the dog runs .", "agreement", 4, "3-4"),  # the previous pair reversed
    ("dog the runs", "the dog runs", "question", 5, "5-8"),
    ("the dog runs", "dog the runs", "question", 8, "5-8"),
    ("the zebra runs", "the runs zebra", "question", 9, "9-16"),  # zebra: OOV, scored as <unk>
    ("the dog runs .", "the dog runs .", "brackets", 16, "9-16"),  # a tie: wrong
    ("the dog", "the dog runs", "brackets", 17, "17-32"),
    ("runs runs", "cat cat", None, 2, "2"),
    ("cat . the", "the . cat", "agreement", None, None),
]


def hand_log10(model, text: str) -> float:
    """log10 p(text + <eos>) from a plain forward pass, OOV words read as <unk> (id 1)."""
    ids = [WORDS.index(word) if word in WORDS else 1 for word in text.split()]
    return sum(token_logprobs(model, [ids], carry=False)[0]) / math.log(10)


def test_tallies_match_scores_from_a_plain_forward_pass(monkeypatch):
    monkeypatch.setattr(pairs_module, "BATCH_PAIRS", 4)  # several batches, one cut mid-category
    model = tiny_model(V, seed=5)
    tokenizer = WordTokenizer(WORDS)
    seen = []
    result = evaluate_pairs(model, tokenizer, [Pair(*case[:4]) for case in CASES], CPU,
                            on_pair=lambda pair, good, bad: seen.append((pair, good, bad)))

    overall, categories, buckets = [0, 0], {}, {}
    for (good, bad, category, distance, bucket), (pair, good_score, bad_score) in zip(CASES, seen, strict=True):
        assert pair == Pair(good, bad, category, distance)
        expected_good, expected_bad = hand_log10(model, good), hand_log10(model, bad)
        # The model runs in float32; the forward pass here sums in float64.
        assert good_score == pytest.approx(expected_good, abs=1e-5)
        assert bad_score == pytest.approx(expected_bad, abs=1e-5)
        if good == bad:
            assert good_score == bad_score
        else:  # far from a tie, so float noise cannot decide the expectation
            assert abs(expected_good - expected_bad) > 1e-3
        right = int(good != bad and expected_good > expected_bad)
        for tally in [overall] + ([categories.setdefault(category, [0, 0])] if category else []) + (
                [buckets.setdefault(bucket, [0, 0])] if bucket else []):
            tally[0] += right
            tally[1] += 1

    assert 0 < overall[0] < overall[1]  # some right, some wrong: the tallies can tell
    assert (result.overall.correct, result.overall.total) == tuple(overall)
    assert {name: [t.correct, t.total] for name, t in result.by_category.items()} == categories
    assert list(result.by_category) == ["agreement", "question", "brackets"]  # first-seen order
    assert {t.label: [t.correct, t.total] for t in result.by_distance} == buckets
    assert [t.label for t in result.by_distance] == ["1", "2", "3-4", "5-8", "9-16", "17-32"]
    assert [(t.low, t.high) for t in result.by_distance] == [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32)]
    assert result.ties == 1
    assert result.unknown_pairs == 1
    assert any("1 pair(s)" in note and "<unk>" in note for note in result.warnings())


def test_ties_are_wrong_and_a_uniform_model_prefers_shorter_sentences():
    model = uniform(V)  # every token 1/V: a sentence of n words scores (n + 1) log10(1/V)
    pairs = [Pair("the dog runs", "the cat runs", "a", 1), Pair("dog", "cat", "a", 1),
             Pair("the dog", "the dog runs .", "b", 2), Pair("the dog runs .", "the dog", "b", 2)]
    result = evaluate_pairs(model, WordTokenizer(WORDS), pairs, CPU)
    assert result.ties == 2
    assert (result.overall.correct, result.overall.total) == (1, 4)
    assert result.by_category["a"].to_dict() == {"correct": 0, "total": 2, "accuracy": 0.0}
    assert result.by_category["b"].to_dict() == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert [(t.bucket, t.correct, t.total) for t in result.by_distance] == [(Bucket(1, 1), 0, 2), (Bucket(2, 2), 1, 2)]


def test_no_pairs_is_a_data_error_and_stream_methods_do_not_apply(tmp_path):
    path = tmp_path / "empty.tsv"
    path.write_text("# nothing here\n\n", encoding="utf-8")
    model, tokenizer = uniform(V), WordTokenizer(WORDS)
    with pytest.raises(DataError, match="no pairs"):
        evaluate_pairs(model, tokenizer, str(path), CPU)
    with pytest.raises(ValueError, match="cache"):
        evaluate_pairs(model, tokenizer, [Pair("a", "b")], CPU, ScoringConfig(cache=10))


# ---------------------------------------------------------------- the shipped pair file


@pytest.fixture(scope="module")
def grammar():
    """corpus_grammar, imported as make_pairs.py imports its sibling."""
    sys.path.insert(0, str(SAMPLE_DIR))
    try:
        yield importlib.import_module("corpus_grammar")
    finally:
        sys.path.remove(str(SAMPLE_DIR))
        sys.modules.pop("corpus_grammar", None)


@pytest.fixture(scope="module")
def shipped():
    return list(read_pairs(str(SAMPLE_DIR / "pairs.tsv")))


def test_shipped_pairs_are_labelled_by_the_grammar(grammar, shipped):
    for pair in shipped:  # the whole file parses in well under a second
        assert grammar.parse(pair.good.split())[0] == 1, pair.good
        assert grammar.parse(pair.bad.split())[0] == 0, pair.bad
        assert len(changed_positions(pair)) == 1, pair


def test_shipped_pairs_cover_every_category_and_agreement_distance(shipped):
    counts = Counter(pair.category for pair in shipped)
    assert set(counts) == {"agreement", "question", "brackets"}
    assert counts["question"] >= 100 and counts["brackets"] >= 100
    agreement = Counter(pair.distance for pair in shipped if pair.category == "agreement")
    assert set(range(1, 16)) <= set(agreement)
    assert min(agreement[d] for d in range(1, 16)) >= 20
    assert (SAMPLE_DIR / "pairs.tsv").stat().st_size < 200_000


def changed_positions(pair: Pair) -> list[int]:
    good, bad = pair.good.split(), pair.bad.split()
    assert len(good) == len(bad)
    return [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]


def derivation(grammar, tokens: list[str]):
    """The sentence's one derivation as a ``(symbol, children)`` tree, by a top-down search
    written here (the grammar's parser only counts derivations)."""
    rules, memo = grammar.GRAMMAR, {}

    def spans(symbol: str, i: int) -> list:
        if symbol not in rules:
            return [(i + 1, symbol)] if i < len(tokens) and tokens[i] == symbol else []
        if (symbol, i) not in memo:
            found = []
            for _, rhs in rules[symbol]:
                partial = [(i, [])]
                for child in rhs:
                    partial = [(k, kids + [tree]) for j, kids in partial for k, tree in spans(child, j)]
                found += [(j, (symbol, kids)) for j, kids in partial]
            memo[symbol, i] = found
        return memo[symbol, i]

    (tree,) = [tree for end, tree in spans("S", 0) if end == len(tokens)]
    return tree


def agreement_sites(tree) -> dict[int, int]:
    """Verb position -> position of the noun it agrees with, for every finite verb."""
    starts: dict[int, int] = {}

    def place(node, start: int) -> int:
        starts[id(node)] = start
        for child in node[1]:
            start = start + 1 if isinstance(child, str) else place(child, start)
        return start

    def kid(node, prefix: str):
        (found,) = [c for c in node[1] if not isinstance(c, str) and c[0].startswith(prefix)]
        return found

    def nodes(node):
        yield node
        for child in node[1]:
            if not isinstance(child, str):
                yield from nodes(child)

    place(tree, 0)
    sites = {}
    for node in nodes(tree):
        kind = node[0].split(".")[0]
        if kind in ("DECL", "RCO"):  # NP VP / that NP TV: the verb agrees with the NP's noun
            verb = node[1][1] if kind == "DECL" else node[1][2]
            sites[starts[id(verb)]] = starts[id(kid(kid(node, "NP."), "N."))]
        elif kind == "NP":  # a subject relative clause agrees with the noun it modifies
            for clause in (c for c in kid(node, "POST.")[1] if not isinstance(c, str) and c[0].startswith("RCS.")):
                sites[starts[id(clause[1][1])]] = starts[id(kid(node, "N."))]
    return sites


def test_shipped_distances_match_their_definitions(grammar, shipped):
    nouns = {form for pair in grammar.NOUNS for form in pair.split("/")}
    rng = random.Random(0)
    agreement = [pair for pair in shipped if pair.category == "agreement"]
    # Every agreement distance, and a sample of the rest.
    sample = [rng.choice([p for p in agreement if p.distance == d]) for d in range(1, 16)]
    sample += rng.sample([p for p in shipped if p.category != "agreement"], 30)
    for pair in sample:
        (position,) = changed_positions(pair)
        tokens = pair.good.split()
        if pair.category == "agreement":
            noun = agreement_sites(derivation(grammar, tokens))[position]
            assert pair.distance == position - noun, pair
        elif pair.category == "question":
            noun = next(i for i in range(position + 1, len(tokens)) if tokens[i] in nouns)
            assert tokens[position] in ("does", "do", "is", "are")
            assert pair.distance == noun - position, pair
        else:
            closer = tokens[position]
            opener = {")": "(", "''": "``"}[closer]
            depth, start = 0, position - 1
            while not (tokens[start] == opener and depth == 0):
                depth += (tokens[start] == closer) - (tokens[start] == opener)
                start -= 1
            assert pair.distance == position - start - 1, pair
            assert pair.bad.split()[position] == {")": "''", "''": ")"}[closer]


def test_make_pairs_is_reproducible_and_the_grammar_agrees(grammar, tmp_path):
    sys.path.insert(0, str(SAMPLE_DIR))
    try:
        make_pairs = importlib.import_module("make_pairs")
        small = ["--per-distance", "2", "--max-distance", "6", "--questions", "5", "--brackets", "5"]
        for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
            assert make_pairs.main(["--seed", seed, "--out", str(tmp_path / name), *small]) == 0
    finally:
        sys.path.remove(str(SAMPLE_DIR))
        sys.modules.pop("make_pairs", None)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()
    made = list(read_pairs(str(tmp_path / "a")))
    assert Counter(p.category for p in made) == {"agreement": 12, "question": 5, "brackets": 5}
    assert Counter(p.distance for p in made if p.category == "agreement") == {d: 2 for d in range(1, 7)}
    for pair in made:
        assert grammar.parse(pair.good.split())[0] == 1 and grammar.parse(pair.bad.split())[0] == 0
