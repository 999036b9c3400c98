"""The shipped sample corpus: its grammar, its exact entropy and its reproducibility."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def modules():
    """(corpus_grammar, make_corpus), imported as the script imports its sibling."""
    sys.path.insert(0, str(SAMPLE_DIR))
    try:
        yield importlib.import_module("corpus_grammar"), importlib.import_module("make_corpus")
    finally:
        sys.path.remove(str(SAMPLE_DIR))
        for name in ("corpus_grammar", "make_corpus"):
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def grammar(modules):
    return modules[0]


@pytest.fixture(scope="module")
def corpus(modules):
    return modules[1]


@pytest.fixture(scope="module")
def samples(grammar):
    return grammar.generate_sentences("pytest", 5000)


def _number_of(grammar) -> dict[str, str]:
    """Every word that shows number, mapped to "sg" or "pl"."""
    number: dict[str, str] = {}
    for pairs in (grammar.NOUNS, grammar.INTRANSITIVE, grammar.TRANSITIVE, grammar.SENTENTIAL):
        for pair in pairs:
            sg, pl = pair.split("/")
            assert sg != pl and sg not in number and pl not in number
            number[sg], number[pl] = "sg", "pl"
    for forms in (grammar.AUX, grammar.COPULA):
        for n, word in forms.items():
            number[word] = n
    return number


def _leaves(node) -> list[str]:
    return [w for c in node[1] for w in ([c] if isinstance(c, str) else _leaves(c))]


def _head_noun(np_node) -> str:
    (noun,) = [c for c in np_node[1] if not isinstance(c, str) and c[0].startswith("N.")]
    return _leaves(noun)[0]


def _walk(node):
    yield node
    for child in node[1]:
        if not isinstance(child, str):
            yield from _walk(child)


def test_exact_entropy_agrees_with_monte_carlo(grammar, samples):
    exact = grammar.exact_entropy()
    nats = sum(-s.logprob for s in samples)
    tokens = sum(len(s.tokens) + 1 for s in samples)
    # s.e. of the 5000-sentence estimate is about 0.005 nats/token
    assert nats / tokens == pytest.approx(exact.nats_per_token, abs=0.025)
    assert tokens / len(samples) == pytest.approx(exact.tokens_per_sentence, rel=0.03)
    assert exact.bits_per_token == pytest.approx(exact.nats_per_token / math.log(2))
    assert exact.perplexity == pytest.approx(math.exp(exact.nats_per_token))
    assert exact.nats_per_token == pytest.approx(
        exact.nats_per_sentence / exact.tokens_per_sentence)


def test_hand_computed_probability_of_a_short_sentence(grammar):
    def zipf_first(k: int) -> float:  # weight of the most frequent word in a class of k
        return 0.5 / sum(1.0 / (r + 2) for r in range(k))

    p = (0.70 * 0.5  # declarative, singular subject
         * zipf_first(len(grammar.DETERMINERS["sg"])) * 0.55  # "the", no adjective
         * zipf_first(len(grammar.NOUNS))  # "dog"
         * (1 - (0.22 + 0.12 + 0.10 + 0.04 + 0.03))  # nothing after the noun
         * 0.85 * 0.40 * zipf_first(len(grammar.INTRANSITIVE)) * 0.6)  # "runs", no adverb
    count, logprob = grammar.parse("the dog runs .".split())
    assert count == 1
    assert logprob == pytest.approx(math.log(p), rel=1e-12)


def test_parser_finds_one_derivation_with_the_sampled_probability(grammar, samples):
    for s in samples[:400]:
        count, logprob = grammar.parse(s.tokens)
        assert count == 1, " ".join(s.tokens)
        assert logprob == pytest.approx(s.logprob, rel=1e-9)
        assert _leaves(s.tree) == s.tokens


def test_every_verb_agrees_and_flipping_one_breaks_the_sentence(grammar, samples):
    number = _number_of(grammar)
    checked = {"DECL": 0, "QUES": 0, "RCO": 0, "RCS": 0}
    for s in samples[:2000]:
        for sym, children in _walk(s.tree):
            kind = sym.split(".")[0]
            if kind == "DECL":
                np_node, vp_node = children
                assert number[_head_noun(np_node)] == number[_leaves(vp_node)[0]]
            elif kind == "QUES":
                assert number[children[0]] == number[_head_noun(children[1])]
            elif kind == "RCO":
                _, np_node, verb = children
                assert number[_head_noun(np_node)] == number[_leaves(verb)[0]]
            elif kind == "NP":
                post = [c for c in children if c[0].startswith("POST.")][0]
                clauses = [c for c in post[1] if not isinstance(c, str) and c[0].startswith("RCS.")]
                for _, (_that, vp_node) in clauses:
                    assert number[_head_noun((sym, children))] == number[_leaves(vp_node)[0]]
                kind = "RCS" if clauses else kind
            if kind in checked:
                checked[kind] += 1
    assert min(checked.values()) > 50, checked

    counterpart = {}
    verb_pairs = grammar.INTRANSITIVE + grammar.TRANSITIVE + grammar.SENTENTIAL + [
        f"{grammar.AUX['sg']}/{grammar.AUX['pl']}",
        f"{grammar.COPULA['sg']}/{grammar.COPULA['pl']}"]
    for pair in verb_pairs:
        sg, pl = pair.split("/")
        counterpart[sg], counterpart[pl] = pl, sg
    flipped = 0
    for s in samples[:200]:
        for i, w in enumerate(s.tokens):
            if w in counterpart:
                broken = s.tokens[:i] + [counterpart[w]] + s.tokens[i + 1:]
                assert grammar.parse(broken) == (0, -math.inf), " ".join(broken)
                flipped += 1
    assert flipped > 200


def test_brackets_balance_and_questions_end_in_question_marks(grammar, samples):
    closer = {"(": ")", "``": "''"}
    question_starts = {grammar.AUX["sg"], grammar.AUX["pl"], grammar.COPULA["sg"],
                       grammar.COPULA["pl"]}
    seen = {"(": 0, "``": 0, "?": 0}
    for s in samples:
        stack = []
        for w in s.tokens:
            if w in closer:
                stack.append(closer[w])
                seen[w] += 1
            elif w in closer.values():
                assert stack and stack.pop() == w, " ".join(s.tokens)
        assert not stack, " ".join(s.tokens)
        clause = s.tokens[1:s.tokens.index("''")] if s.tokens[0] == "``" else s.tokens
        assert (clause[0] in question_starts) == (clause[-1] == "?"), " ".join(s.tokens)
        seen["?"] += clause[-1] == "?"
    assert min(seen.values()) > 100, seen


def test_same_seed_gives_identical_files(corpus, tmp_path):
    sizes = ["--train-tokens", "2000", "--valid-tokens", "300", "--test-tokens", "300"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert corpus.main(["--seed", seed, "--out-dir", str(tmp_path / name), *sizes]) == 0
    files = ["train.txt", "valid.txt", "test.txt", "ENTROPY.json", "ENTROPY.md"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a/train.txt").read_bytes() != (tmp_path / "c/train.txt").read_bytes()
    valid, test = ((tmp_path / "a" / f).read_text().splitlines() for f in ("valid.txt", "test.txt"))
    assert valid[:20] != test[:20]  # each split draws from its own stream
    assert sum(len(line.split()) + 1 for line in test) >= 300


def test_recorded_figures_match_the_script(grammar, corpus):
    report = json.loads((SAMPLE_DIR / "ENTROPY.json").read_text())
    exact = grammar.exact_entropy()
    for key, value in vars(exact).items():
        assert report["exact"][key] == pytest.approx(value, abs=1e-6), key
    assert f"{exact.nats_per_token:.4f}" in (SAMPLE_DIR / "ENTROPY.md").read_text()
    mc = report["monte_carlo_train"]
    assert abs(mc["nats_per_token"] - exact.nats_per_token) < 4 * mc["stderr"]
    assert report["unigram_train"]["nats_per_token"] > exact.nats_per_token + 1.0

    seed = report["seed"]
    for split, counts in report["splits"].items():
        lines = (SAMPLE_DIR / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == counts["sentences"]
        assert sum(len(line.split()) + 1 for line in lines) == counts["tokens_with_eos"]
        head = [" ".join(s.tokens) for s in corpus.sample_split(seed, split, 500)]
        assert lines[:len(head)] == head  # the shipped text is what the seed regenerates
