"""The probabilistic grammar behind the sample corpus: sampling, exact entropy, parsing.

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

Standard library only; make_corpus.py turns it into the shipped files.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

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


def _cumulative(g: Grammar) -> dict[str, list[float]]:
    return {sym: [sum(p for p, _ in rules[: i + 1]) for i in range(len(rules))] for sym, rules in g.items()}


def _lexical(g: Grammar) -> dict[str, dict[str, float]]:
    """Nonterminals whose every rule is one terminal: word -> probability, for one lookup."""
    return {sym: {rhs[0]: p for p, rhs in rules}
            for sym, rules in g.items()
            if all(len(rhs) == 1 and rhs[0] not in g for _, rhs in rules)}


_TABLES: dict[int, tuple[Grammar, dict[str, list[float]], dict[str, dict[str, float]]]] = {}
"""Per grammar, by identity: (the grammar, its cumulative rule weights, its lexical rules).
Each entry keeps its grammar alive so that no id is reused."""


def _tables(g: Grammar) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """The sampler's and the parser's lookup tables of ``g``, built once per grammar."""
    if id(g) not in _TABLES:
        _TABLES[id(g)] = (g, _cumulative(g), _lexical(g))
    return _TABLES[id(g)][1:]


def _expand(sym: str, rng: random.Random, out: list[str], g: Grammar,
            cumulative: dict[str, list[float]]) -> tuple[Tree, float]:
    rules = g[sym]
    weights = cumulative[sym]
    i = min(bisect.bisect_right(weights, rng.random() * weights[-1]), len(rules) - 1)
    p, rhs = rules[i]
    logprob = math.log(p)
    children: list = []
    for child in rhs:
        if child in g:
            subtree, lp = _expand(child, rng, out, g, cumulative)
            children.append(subtree)
            logprob += lp
        else:
            children.append(child)
            out.append(child)
    return (sym, children), logprob


def sample_from(g: Grammar, start: str, rng: random.Random) -> Sample:
    """One derivation of ``start`` in grammar ``g`` (a grammar built on this one's symbols)."""
    tokens: list[str] = []
    tree, logprob = _expand(start, rng, tokens, g, _tables(g)[0])
    return Sample(tokens, logprob, tree)


def sample_sentence(rng: random.Random) -> Sample:
    return sample_from(GRAMMAR, "S", rng)


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


def exact_entropy(g: Grammar | None = None, start: str = "S") -> Entropy:
    """The entropy rate of a stream of i.i.d. derivations of ``start`` (one <eos> each)."""
    h, words = _expectations(GRAMMAR if g is None else g)[start]
    tokens = words + 1.0
    rate = h / tokens
    return Entropy(h, tokens, rate, rate / math.log(2), math.exp(rate))


# --- Parsing: p(sentence) summed over all derivations ---------------------------------
def parse(tokens: list[str], g: Grammar | None = None, start: str = "S") -> tuple[int, float]:
    """(number of derivations, log p(sentence)) by exhaustive top-down chart parsing.

    Independent of the sampler: a correct grammar gives exactly one derivation for every
    sampled sentence, and zero (log p = -inf) for a sentence outside the language.
    """
    g = GRAMMAR if g is None else g
    lexical = _tables(g)[1]
    memo: dict[tuple[str, int], dict[int, tuple[int, float]]] = {}

    def spans(sym: str, i: int) -> dict[int, tuple[int, float]]:
        """end position -> (derivations, log probability) for sym starting at token i.

        Log space: a story of a few hundred tokens has a probability below the smallest float."""
        if sym not in g:
            return {i + 1: (1, 0.0)} if i < len(tokens) and tokens[i] == sym else {}
        if sym in lexical:
            p = lexical[sym].get(tokens[i]) if i < len(tokens) else None
            return {i + 1: (1, math.log(p))} if p else {}
        if (sym, i) not in memo:
            out: dict[int, tuple[int, float]] = {}
            for p, rhs in g[sym]:
                states = {i: (1, math.log(p))}
                for child in rhs:
                    nxt: dict[int, tuple[int, float]] = {}
                    for j, (c, q) in states.items():
                        for k, (c2, q2) in spans(child, j).items():
                            c0, q0 = nxt.get(k, (0, -math.inf))
                            nxt[k] = (c0 + c * c2, _log_add(q0, q + q2))
                    states = nxt
                for k, (c, q) in states.items():
                    c0, q0 = out.get(k, (0, -math.inf))
                    out[k] = (c0 + c, _log_add(q0, q))
            memo[(sym, i)] = out
        return memo[(sym, i)]

    return spans(start, 0).get(len(tokens), (0, -math.inf))


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without leaving log space."""
    if a == -math.inf:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def sentence_logprob(tokens: list[str]) -> float:
    return parse(tokens)[1]
