#!/usr/bin/env python3
"""Generate the sample corpus from a small probabilistic grammar, with its exact entropy.

The grammar is an invented slice of English: determiners, adjectives, nouns, verbs that
agree in number with their subject across prepositional phrases and relative clauses,
sentential complements, questions whose auxiliary agrees with a later noun and whose
last token is "?", and brackets ("( ... )", "`` ... ''") that must be closed.

Two properties make the entropy computable exactly instead of estimated:

* The grammar is acyclic: recursion is unrolled up to a fixed depth, so every expectation
  is one memoised recursion over the nonterminals.
* It is unambiguous: every sentence has exactly one derivation (each choice emits words
  no other choice can emit there), so -log p(sentence) is the sum of -log p(rule) over
  its derivation and H(sentence) = H(derivation).

Sentences are i.i.d., so the entropy rate per token is E[-log p(sentence)] divided by
E[tokens per sentence], counting one <eos> per line as a token.

Regenerate the shipped files:  python3 sample_data/make_corpus.py --seed 0 --out-dir sample_data
Print only the figures:        python3 sample_data/make_corpus.py --entropy
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# --- Lexicon --------------------------------------------------------------------------
# "singular/plural" pairs; within a class earlier words are more frequent (Zipf weights).
NOUNS = """dog/dogs cat/cats girl/girls boy/boys teacher/teachers farmer/farmers
bird/birds horse/horses child/children woman/women man/men doctor/doctors king/kings
queen/queens baker/bakers sailor/sailors student/students fox/foxes wolf/wolves
rabbit/rabbits painter/painters singer/singers pilot/pilots writer/writers
neighbor/neighbors friend/friends stranger/strangers soldier/soldiers priest/priests
merchant/merchants hunter/hunters fisher/fishers miner/miners nurse/nurses judge/judges
lawyer/lawyers dancer/dancers monkey/monkeys goose/geese mouse/mice
crow/crows frog/frogs bear/bears duck/ducks goat/goats lion/lions tiger/tigers
snake/snakes spider/spiders poet/poets clerk/clerks guard/guards cook/cooks thief/thieves
prince/princes giant/giants wizard/wizards""".split()
INTRANSITIVE = """runs/run sleeps/sleep laughs/laugh sings/sing waits/wait smiles/smile
falls/fall swims/swim dances/dance cries/cry shouts/shout arrives/arrive leaves/leave
listens/listen rests/rest wanders/wander hides/hide jumps/jump works/work prays/pray""".split()
TRANSITIVE = """sees/see likes/like chases/chase helps/help finds/find follows/follow
knows/know meets/meet calls/call watches/watch feeds/feed hears/hear loves/love
fears/fear visits/visit trusts/trust admires/admire greets/greet blames/blame
teaches/teach pushes/push thanks/thank warns/warn remembers/remember ignores/ignore""".split()
SENTENTIAL = "thinks/think says/say believes/believe hopes/hope claims/claim doubts/doubt".split()
SIZES = "big small little tall short tiny huge young grey".split()  # only before a noun
QUALITIES = """happy sad quiet loud brave clever kind lazy busy proud shy wise poor rich
strange gentle tired hungry lonely famous polite fair cruel calm nervous curious silly
grumpy sleepy lucky fierce jolly""".split()
ADVERBS = """today again quickly slowly often alone loudly quietly early late
outside gladly rarely twice happily""".split()
PREPOSITIONS = "near behind with beside under above inside beyond without around".split()
DETERMINERS = {"sg": "the a every this each".split(), "pl": "the some these many two few".split()}
SAY_VERBS = "said replied whispered shouted answered".split()
AUX = {"sg": "does", "pl": "do"}
COPULA = {"sg": "is", "pl": "are"}
NUMBERS = ("sg", "pl")
MAX_DEPTH = 3  # noun phrases nested this deep take no modifiers

Rule = tuple[float, tuple[str, ...]]
Grammar = dict[str, list[Rule]]


def _forms(pairs: list[str], number: str) -> list[str]:
    index = 0 if number == "sg" else 1
    return [pair.split("/")[index] for pair in pairs]


def build_grammar() -> Grammar:
    """Nonterminals are the keys; any other symbol is a terminal (a token).

    Names carry number (sg/pl) and depth: NP noun phrase (NPX: of either number), VP
    finite verb phrase (VPB: bare, after "does"/"do"), PP prepositional phrase, RCS/RCO
    subject/object relative clause ("that sees the cat" / "that the cat sees"), POST
    what follows a noun, DECL a declarative clause whose verb agrees with its subject.
    """
    g: Grammar = {}

    def words(name: str, tokens: list[str]) -> None:
        weights = [1.0 / (rank + 2) for rank in range(len(tokens))]
        total = sum(weights)
        g[name] = [(w / total, (t,)) for w, t in zip(weights, tokens)]

    for n in NUMBERS:
        words(f"N.{n}", _forms(NOUNS, n))
        words(f"IV.{n}", _forms(INTRANSITIVE, n))
        words(f"TV.{n}", _forms(TRANSITIVE, n))
        words(f"SV.{n}", _forms(SENTENTIAL, n))
        words(f"DET.{n}", DETERMINERS[n])
    words("IV.base", _forms(INTRANSITIVE, "pl"))
    words("TV.base", _forms(TRANSITIVE, "pl"))
    words("SIZE", SIZES)
    words("ADJ", QUALITIES)
    words("ADV", ADVERBS)
    words("P", PREPOSITIONS)
    words("SAY", SAY_VERBS)
    # "big happy dog" but never "happy big dog" or "happy happy dog": one order, one parse
    g["ADJS"] = [(0.55, ()), (0.25, ("ADJ",)), (0.10, ("SIZE",)), (0.10, ("SIZE", "ADJ"))]
    g["ADVS"] = [(0.6, ()), (0.4, ("ADV",))]

    g["S"] = [(0.70, ("DECL.0", ".")),
              (0.15, ("QUES", "?")),
              (0.10, ("``", "DECL.0", ",", "''", "SAY", "NPX.1", ".")),
              (0.05, ("``", "QUES", "?", "''", "asked", "NPX.1", "."))]
    g["QUES"] = [(0.30, (AUX["sg"], "NP.sg.0", "VPB.0")),
                 (0.30, (AUX["pl"], "NP.pl.0", "VPB.0")),
                 (0.20, (COPULA["sg"], "NP.sg.0", "ADJ")),
                 (0.20, (COPULA["pl"], "NP.pl.0", "ADJ"))]
    for d in range(MAX_DEPTH + 2):  # an object of a depth-d verb sits at d + 1
        g[f"DECL.{d}"] = [(0.5, (f"NP.{n}.{d}", f"VP.{n}.{d}")) for n in NUMBERS]
        g[f"NPX.{d}"] = [(0.5, (f"NP.{n}.{d}",)) for n in NUMBERS]
        g[f"VPB.{d}"] = [(0.5, ("IV.base", "ADVS")), (0.5, ("TV.base", f"NPX.{d + 1}"))]
        g[f"PP.{d}"] = [(1.0, ("P", f"NPX.{d + 1}"))]
        g[f"RCO.{d}"] = [(0.5, ("that", f"NP.{n}.{d + 1}", f"TV.{n}")) for n in NUMBERS]
        for n in NUMBERS:
            g[f"NP.{n}.{d}"] = [(1.0, (f"DET.{n}", "ADJS", f"N.{n}", f"POST.{n}.{d}"))]
            g[f"RCS.{n}.{d}"] = [(1.0, ("that", f"VP.{n}.{d + 1}"))]
            vp = [(0.40, (f"IV.{n}", "ADVS")),
                  (0.40, (f"TV.{n}", f"NPX.{d + 1}")),
                  (0.20, (COPULA[n], "ADJ"))]
            if d == 0:  # sentential complements only in the main clause keep depth bounded
                vp = [(0.85 * p, rhs) for p, rhs in vp] + [(0.15, (f"SV.{n}", "that", "DECL.1"))]
            g[f"VP.{n}.{d}"] = vp
            g[f"POST.{n}.{d}"] = _post_modifiers(n, d)
    return _reachable(g, "S")


def _reachable(g: Grammar, start: str) -> Grammar:
    """Drop what the depth bound makes unreachable; check what is left is a proper PCFG."""
    seen, todo = set(), [start]
    while todo:
        sym = todo.pop()
        if sym in g and sym not in seen:
            seen.add(sym)
            todo.extend(child for _, rhs in g[sym] for child in rhs)
    undefined = {c for s in seen for _, rhs in g[s] for c in rhs if c not in g and c[0].isupper()}
    if undefined:
        raise ValueError(f"grammar uses undefined nonterminals: {sorted(undefined)}")
    unnormalised = [s for s in seen if abs(sum(p for p, _ in g[s]) - 1.0) > 1e-9]
    if unnormalised:
        raise ValueError(f"rule probabilities do not sum to 1 for: {sorted(unnormalised)}")
    return {sym: rules for sym, rules in g.items() if sym in seen}


def _post_modifiers(n: str, d: int) -> list[Rule]:
    """What may follow a noun: nothing, a PP, a relative clause, or either in brackets."""
    if d >= MAX_DEPTH:
        return [(1.0, ())]
    scale = 0.55 ** d  # deeper noun phrases are modified less often
    options = [(0.22, (f"PP.{d}",)),
               (0.12, (f"RCS.{n}.{d}",)),
               (0.10, (f"RCO.{d}",)),
               (0.04, ("(", f"PP.{d}", ")")),
               (0.03, ("(", f"RCS.{n}.{d}", ")"))]
    options = [(p * scale, rhs) for p, rhs in options]
    return [(1.0 - sum(p for p, _ in options), ())] + options


GRAMMAR = build_grammar()

# --- Sampling ------------------------------------------------------------------------
Tree = tuple  # (symbol, [Tree | str, ...])


@dataclass(frozen=True)
class Sample:
    tokens: list[str]
    logprob: float  # natural log of p(sentence), which is p(derivation)
    tree: Tree


_CUMULATIVE = {sym: [sum(p for p, _ in rules[: i + 1]) for i in range(len(rules))]
               for sym, rules in GRAMMAR.items()}


def _expand(sym: str, rng: random.Random, out: list[str]) -> tuple[Tree, float]:
    rules = GRAMMAR[sym]
    cumulative = _CUMULATIVE[sym]
    i = min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(rules) - 1)
    p, rhs = rules[i]
    logprob = math.log(p)
    children: list = []
    for child in rhs:
        if child in GRAMMAR:
            subtree, lp = _expand(child, rng, out)
            children.append(subtree)
            logprob += lp
        else:
            children.append(child)
            out.append(child)
    return (sym, children), logprob


def sample_sentence(rng: random.Random) -> Sample:
    tokens: list[str] = []
    tree, logprob = _expand("S", rng, tokens)
    return Sample(tokens, logprob, tree)


def generate_sentences(seed: int | str, n: int) -> list[Sample]:
    """n i.i.d. sentences; the same seed always gives the same sentences."""
    rng = random.Random(str(seed))  # str seeds hash with SHA-512: stable across runs
    return [sample_sentence(rng) for _ in range(n)]


# --- Exact entropy -------------------------------------------------------------------
@dataclass(frozen=True)
class Entropy:
    nats_per_sentence: float  # E[-log p(sentence)]
    tokens_per_sentence: float  # E[words + 1 <eos>]
    nats_per_token: float
    bits_per_token: float
    perplexity: float  # exp(nats_per_token): no model can do better on average


def _expectations(g: Grammar) -> dict[str, tuple[float, float]]:
    """(E[-log p(derivation)], E[number of tokens]) for every nonterminal.

    H(X) = sum_r p_r (-log p_r + sum_{Y in r} H(Y)) and L(X) = sum_r p_r sum_{Y in r} L(Y),
    with H = 0, L = 1 for a terminal: the grammar is acyclic, so this terminates.
    """
    memo: dict[str, tuple[float, float]] = {}

    def visit(sym: str) -> tuple[float, float]:
        if sym not in g:
            return 0.0, 1.0
        if sym not in memo:
            h = length = 0.0
            for p, rhs in g[sym]:
                parts = [visit(child) for child in rhs]
                h += p * (-math.log(p) + sum(ph for ph, _ in parts))
                length += p * sum(pl for _, pl in parts)
            memo[sym] = (h, length)
        return memo[sym]

    for sym in g:
        visit(sym)
    return memo


def exact_entropy() -> Entropy:
    h, words = _expectations(GRAMMAR)["S"]
    tokens = words + 1.0
    rate = h / tokens
    return Entropy(h, tokens, rate, rate / math.log(2), math.exp(rate))


# --- Parsing: p(sentence) summed over all derivations ---------------------------------
_LEXICAL = {sym: {rhs[0]: p for p, rhs in rules}
            for sym, rules in GRAMMAR.items()
            if all(len(rhs) == 1 and rhs[0] not in GRAMMAR for _, rhs in rules)}


def parse(tokens: list[str]) -> tuple[int, float]:
    """(number of derivations, log p(sentence)) by exhaustive top-down chart parsing.

    Independent of the sampler: a correct grammar gives exactly one derivation for every
    sampled sentence, and zero (log p = -inf) for a sentence outside the language.
    """
    memo: dict[tuple[str, int], dict[int, tuple[int, float]]] = {}

    def spans(sym: str, i: int) -> dict[int, tuple[int, float]]:
        """end position -> (derivations, probability) for sym starting at token i."""
        if sym not in GRAMMAR:
            return {i + 1: (1, 1.0)} if i < len(tokens) and tokens[i] == sym else {}
        if sym in _LEXICAL:
            p = _LEXICAL[sym].get(tokens[i]) if i < len(tokens) else None
            return {i + 1: (1, p)} if p else {}
        if (sym, i) not in memo:
            out: dict[int, tuple[int, float]] = {}
            for p, rhs in GRAMMAR[sym]:
                states = {i: (1, p)}
                for child in rhs:
                    nxt: dict[int, tuple[int, float]] = {}
                    for j, (c, q) in states.items():
                        for k, (c2, q2) in spans(child, j).items():
                            c0, q0 = nxt.get(k, (0, 0.0))
                            nxt[k] = (c0 + c * c2, q0 + q * q2)
                    states = nxt
                for k, (c, q) in states.items():
                    c0, q0 = out.get(k, (0, 0.0))
                    out[k] = (c0 + c, q0 + q)
            memo[(sym, i)] = out
        return memo[(sym, i)]

    count, prob = spans("S", 0).get(len(tokens), (0, 0.0))
    return count, (math.log(prob) if prob > 0 else -math.inf)


def sentence_logprob(tokens: list[str]) -> float:
    return parse(tokens)[1]


# --- Corpus statistics ---------------------------------------------------------------
def monte_carlo_entropy(samples: list[Sample]) -> tuple[float, float]:
    """(mean -log p / mean tokens, its standard error by the delta method), in nats."""
    a = [-s.logprob for s in samples]
    b = [len(s.tokens) + 1 for s in samples]
    n = len(samples)
    rate = sum(a) / sum(b)
    mean_b = sum(b) / n
    residual_var = sum((x - rate * y) ** 2 for x, y in zip(a, b)) / (n - 1)
    return rate, math.sqrt(residual_var / n) / mean_b


def unigram_entropy(samples: list[Sample]) -> float:
    """Entropy in nats of the empirical token distribution, one <eos> per sentence."""
    counts = Counter(t for s in samples for t in s.tokens)
    counts["<eos>"] = len(samples)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def sample_split(seed: int, split: str, target_tokens: int) -> list[Sample]:
    """Sentences from the split's own random stream until target_tokens (incl. <eos>)."""
    rng = random.Random(f"{seed}:{split}")
    samples: list[Sample] = []
    total = 0
    while total < target_tokens:
        samples.append(sample_sentence(rng))
        total += len(samples[-1].tokens) + 1
    return samples


def write_corpus(out_dir: Path, seed: int, sizes: dict[str, int]) -> dict:
    """Write <split>.txt for each split, ENTROPY.json and ENTROPY.md; return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: sample_split(seed, split, target) for split, target in sizes.items()}
    for samples in splits.values():
        for s in samples:  # the exact figures hold only if no sentence has two derivations
            if parse(s.tokens)[0] != 1:
                raise RuntimeError(f"ambiguous sentence: {' '.join(s.tokens)}")
    for split, samples in splits.items():
        text = "".join(" ".join(s.tokens) + "\n" for s in samples)
        (out_dir / f"{split}.txt").write_text(text, encoding="utf-8", newline="\n")
    exact = exact_entropy()
    train = splits["train"]
    mc_rate, mc_stderr = monte_carlo_entropy(train)
    unigram = unigram_entropy(train)
    report = {
        "seed": seed,
        "exact": {k: round(v, 6) for k, v in vars(exact).items()},
        "monte_carlo_train": {"nats_per_token": round(mc_rate, 6),
                              "stderr": round(mc_stderr, 6),
                              "sentences": len(train)},
        "unigram_train": {"nats_per_token": round(unigram, 6),
                          "bits_per_token": round(unigram / math.log(2), 6),
                          "perplexity": round(math.exp(unigram), 3)},
        "vocabulary_size": len({t for s in train for t in s.tokens}) + 1,
        "splits": {split: {"sentences": len(samples),
                           "tokens_with_eos": sum(len(s.tokens) + 1 for s in samples),
                           # The grammar's own cross-entropy on this file: what a perfect
                           # model would score on it (the exact rate plus sampling luck).
                           "true_nats_per_token": round(monte_carlo_entropy(samples)[0], 6),
                           "true_perplexity": round(math.exp(monte_carlo_entropy(samples)[0]), 3)}
                   for split, samples in splits.items()},
    }
    (out_dir / "ENTROPY.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "ENTROPY.md").write_text(_entropy_markdown(report), encoding="utf-8")
    return report


def _entropy_markdown(r: dict) -> str:
    e, mc, u = r["exact"], r["monte_carlo_train"], r["unigram_train"]
    rows = "\n".join(f"| {split} | {v['sentences']} | {v['tokens_with_eos']} | {v['true_perplexity']:.2f} |"
                     for split, v in r["splits"].items())
    return f"""# Entropy of the sample corpus (seed {r['seed']})

A token is a word or punctuation mark, plus one `<eos>` per line.

| figure | nats/token | bits/token | perplexity |
|---|---|---|---|
| exact entropy rate of the grammar | {e['nats_per_token']:.4f} | {e['bits_per_token']:.4f} | {e['perplexity']:.2f} |
| Monte Carlo over train.txt | {mc['nats_per_token']:.4f} (s.e. {mc['stderr']:.4f}) | | |
| unigram entropy of train.txt | {u['nats_per_token']:.4f} | {u['bits_per_token']:.4f} | {u['perplexity']:.2f} |

The exact rate is no model's estimate: it is E[-log p(sentence)] = {e['nats_per_sentence']:.4f} nats
divided by E[tokens per sentence] = {e['tokens_per_sentence']:.4f}, both computed from the
grammar by a memoised recursion over its (acyclic) rules. The grammar is unambiguous, so
-log p(sentence) is the sum of -log p(rule) along the sentence's only derivation. Sentences
are i.i.d., so the ratio of expectations is the entropy rate of the token stream.

A language model's test cross-entropy cannot be below the exact rate except by chance
(on test.txt the standard error is about {mc['stderr'] * math.sqrt(r['splits']['train']['sentences'] / r['splits']['test']['sentences']):.3f} nats/token); a unigram model
sits near the unigram entropy. The gap between the two is what context is worth.

| split | sentences | tokens (incl. `<eos>`) | perplexity of the true grammar on the file |
|---|---|---|---|
{rows}

Vocabulary: {r['vocabulary_size']} types including `<eos>`. Regenerate with
`python3 sample_data/make_corpus.py --seed {r['seed']} --out-dir sample_data`.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--train-tokens", type=int, default=350_000)
    parser.add_argument("--valid-tokens", type=int, default=35_000)
    parser.add_argument("--test-tokens", type=int, default=35_000)
    parser.add_argument("--entropy", action="store_true", help="only print the exact figures")
    args = parser.parse_args(argv)
    if args.entropy:
        e = exact_entropy()
        print(f"nats/sentence {e.nats_per_sentence:.6f}  tokens/sentence {e.tokens_per_sentence:.6f}")
        print(f"nats/token {e.nats_per_token:.6f}  bits/token {e.bits_per_token:.6f}  "
              f"perplexity {e.perplexity:.4f}")
        return 0
    sizes = {"train": args.train_tokens, "valid": args.valid_tokens, "test": args.test_tokens}
    report = write_corpus(args.out_dir, args.seed, sizes)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
