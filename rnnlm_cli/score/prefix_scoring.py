"""Scoring many short sentences at once, each from a fresh state: n-best hypotheses.

Two ways to the same numbers (natural-log probability of every token and the line end,
the first predicted from ``<eos>``, as :mod:`rnnlm_cli.score.token_scoring` scores a
sentence):

* **plain**: :func:`rnnlm_cli.score.token_scoring.score_sentences`, sentences sorted by
  length and padded into batches; every sentence runs its own tokens.
* **prefix tree**: the hypotheses of a list mostly differ in a few words, so they share
  token prefixes. :class:`PrefixTree` keeps each distinct prefix once, the ``<eos>`` every
  sentence starts from at the root, and :func:`score_prefix_tree` runs the model over the
  tree depth by depth: all nodes of one depth are one batch of one step, each reading its
  last token from its parent's state. The decoder then scores each distinct
  ``(node, next token)`` pair once, so a shared prefix costs neither the recurrent step
  nor the softmax twice. A hypothesis' score is the sum along its path, plus the line end.

Which is faster depends on how much is shared and on the machine: a CPU pays per step
and per batch, a GPU per kernel launch. :class:`HypothesisScorer` takes the tree when it
would run at most :data:`TREE_SHARE` of the plain scorer's tokens and enough sentences
are scored at once to pay for its steps (``prefix="auto"``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from rnnlm_cli.models.lm import select_state
from rnnlm_cli.score.token_scoring import Piece, PieceEncoder, RecentAnswers, score_sentences
from rnnlm_cli.score.word_scoring import NgramMix, check_mixable, piece_words, sentence_log10
from rnnlm_cli.units import LN10

PREFIX_MODES = ("auto", "on", "off")

TREE_SHARE = 0.85
"""``prefix="auto"`` takes the tree when its distinct (state, next token) pairs are at most
this share of the tokens the plain scorer would predict, and :data:`TREE_MIN_SENTENCES`
sentences or more are scored at once. Lists of 10-word hypotheses, each a sentence and
nine corruptions of one to three edits, share 0.71 (``bench/nbest_speed.py``); sentences
that have nothing to do with each other share little beyond the root, and there the
plain scorer's one fused call per batch wins."""

TREE_MIN_SENTENCES = 128
"""The tree runs a step per depth, each a few calls into torch; below about a hundred
sentences a call, those steps cost more on a CPU than the tokens they save. On a 1x256
LSTM, one thread, lists of ten 10-word hypotheses sharing 0.71: 10 sentences a call,
plain 1,900 hypotheses/s and tree 1,100; 32, 3,400 and 2,500; 256, 2,900 and 4,600;
1,024, 4,200 and 4,800 (``bench/nbest_speed.py``)."""

MAX_TREE_DEPTH = 512
"""Longer sentences go to the plain scorer: a step per token costs more than one fused
call over the whole sentence when there is nothing to share."""


class PrefixTree:
    """The distinct token prefixes of sentence pieces, each node one step of the model.

    Node 0 is the root: it reads the pieces' context (``<eos>``). Every other node is one
    distinct ``(parent, token)`` pair: the model, in the parent's state, predicts ``token``
    there (its log-probability is the node's score), then reads it to reach the node's
    own state. ``paths[i]`` lists the nodes of piece ``i``'s targets (its tokens, then
    ``<eos>``): its score is the sum of theirs.
    """

    def __init__(self, pieces: Sequence[Piece]) -> None:
        contexts = {piece.context for piece in pieces}
        if len(contexts) > 1 or not all(piece.last for piece in pieces):
            raise ValueError("a prefix tree holds whole sentences that start from one context")
        self.tokens: list[int] = [contexts.pop() if contexts else 0]
        """Per node: the token predicted there, which the model then reads (the root: the context)."""
        self.parents: list[int] = [-1]
        self.depths: list[int] = [0]
        self.paths: list[list[int]] = []
        # One int key per (parent, token): a tuple key would cost a tuple per token.
        children: dict[int, int] = {}
        tokens, parents, depths = self.tokens, self.parents, self.depths
        for piece in pieces:
            node, path = 0, []
            for target in piece.targets:
                key = node << 32 | target
                child = children.get(key)
                if child is None:
                    child = children[key] = len(tokens)
                    tokens.append(target)
                    parents.append(node)
                    depths.append(depths[node] + 1)
                path.append(child)
                node = child
            self.paths.append(path)

    @property
    def predictions(self) -> int:
        """Distinct (state, target) pairs: the decoder rows the tree needs."""
        return len(self.tokens) - 1

    def share(self, pieces: Sequence[Piece]) -> float:
        """Its predictions as a share of the plain scorer's (the pieces' targets, padding left out)."""
        targets = sum(len(piece.targets) for piece in pieces)
        return self.predictions / targets if targets else 1.0


@torch.no_grad()
def score_prefix_tree(model, pieces: Sequence[Piece], device, batch_tokens: int = 4096,
                      tree: PrefixTree | None = None) -> None:
    """Fill every piece's ``logprobs`` (natural log, one per target) through a prefix tree
    (``tree``, when the caller built it already from these pieces).

    The pieces are whole sentences from one context. Memory holds the features of every
    needed node, (nodes, D), and one depth's state; the decoder runs ``batch_tokens``
    (node, target) pairs at a time, which bounds its (rows, V) logits.
    """
    if not pieces:
        return
    tree = PrefixTree(pieces) if tree is None else tree
    # Only nodes with children need a step: a sentence's last node (its <eos>) is read by none.
    has_children = [False] * len(tree.tokens)
    for parent in tree.parents[1:]:
        has_children[parent] = True
    levels: list[list[int]] = []
    for node, depth in enumerate(tree.depths):
        if has_children[node]:
            while len(levels) <= depth:
                levels.append([])
            levels[depth].append(node)
    row = [0] * len(tree.tokens)  # node -> its row in `features`
    feature_rows: list[torch.Tensor] = []
    state = model.init_state(1, device=device)
    offset = 0
    for depth, nodes in enumerate(levels):
        inputs = torch.tensor([tree.tokens[node] for node in nodes], dtype=torch.long, device=device)
        if depth > 0:
            # Columns of the previous depth's state: rows there run from offset - its size.
            before = offset - len(levels[depth - 1])
            parents = torch.tensor([row[tree.parents[node]] - before for node in nodes], dtype=torch.long)
            state = select_state(state, parents)  # each tensor (L, B_depth, H)
        features, state = model.hidden_states(inputs.unsqueeze(0), state)  # (1, B_depth, D)
        feature_rows.append(features[0])
        for slot, node in enumerate(nodes):
            row[node] = offset + slot
        offset += len(nodes)
    features = torch.cat(feature_rows)  # (stepped nodes, D)
    # Node n (n >= 1) is predicted from its parent's features: decoder row n - 1.
    rows = torch.tensor([row[parent] for parent in tree.parents[1:]], dtype=torch.long, device=device)
    targets = torch.tensor(tree.tokens[1:], dtype=torch.long, device=device)
    scores = []
    for start in range(0, len(rows), batch_tokens):
        chosen = rows[start:start + batch_tokens]
        scores.append(model.target_logprobs(features.index_select(0, chosen), targets[start:start + batch_tokens]))
    values = [0.0] + torch.cat(scores).double().cpu().tolist()  # per node; the root predicts nothing
    for piece, path in zip(pieces, tree.paths):
        piece.logprobs.extend([values[node] for node in path])


class HypothesisScorer:
    """Scores texts one sentence each, from a fresh state, independently of each other,
    many at a time: what :class:`rnnlm_cli.score.evaluate.TextScorer` does, with the choice
    of the prefix tree.

    ``prefix``: ``"on"`` scores through :func:`score_prefix_tree`, ``"off"`` through the
    plain length-sorted batches, ``"auto"`` picks per call by :meth:`PrefixTree.share` against
    :data:`TREE_SHARE` and the number of sentences against :data:`TREE_MIN_SENTENCES`.
    Sentences longer than :data:`MAX_TREE_DEPTH` tokens always take the plain scorer
    (which scores one longer than ``batch_tokens`` alone, in chunks). The same
    text always gets the same score: recent answers are remembered (up to ``memory``
    texts), so two batchings never make two copies differ in the last bits. OOV words are
    scored as ``<unk>`` unless ``unk`` is False; ``mix`` mixes each word with an n-gram model.
    """

    def __init__(self, model, tokenizer, device, *, unk: bool = True, mix: NgramMix | None = None,
                 prefix: str = "auto", batch_tokens: int = 4096, chunk_tokens: int = 256,
                 memory: int = 100_000) -> None:
        if prefix not in PREFIX_MODES:
            raise ValueError(f"prefix must be one of {PREFIX_MODES}")
        check_mixable(tokenizer, mix)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._device = device
        self._unk = unk
        self._mix = mix
        self._prefix = prefix
        self._batch_tokens = batch_tokens
        self._chunk_tokens = chunk_tokens
        self._known = RecentAnswers(memory)
        self.tree_calls = 0
        """Calls that went through the prefix tree, for the bench and tests."""

    def score(self, texts: Sequence[str]) -> list[float]:
        """Each text's log10 score as one sentence (OOVs and zero-probability words left
        out, as SRILM sums them)."""
        new = self._known.missing(texts)
        encoder = PieceEncoder(self._tokenizer)
        pieces = [encoder.encode(text, True, context=self._tokenizer.eos_id) for text in new]
        short = [piece for piece in pieces if len(piece.targets) <= MAX_TREE_DEPTH]
        tree = PrefixTree(short) if short and self._prefix != "off" else None
        if tree is not None and (self._prefix == "on" or (
                len(short) >= TREE_MIN_SENTENCES and tree.share(short) <= TREE_SHARE)):
            self.tree_calls += 1
            score_prefix_tree(self._model, short, self._device, self._batch_tokens, tree)
            rest = [piece for piece in pieces if len(piece.targets) > MAX_TREE_DEPTH]
        else:
            rest = pieces
        # score_sentences fills the pieces in place; it yields them in their order.
        for _ in score_sentences(self._model, rest, self._device, self._batch_tokens, self._chunk_tokens):
            pass
        for text, piece in zip(new, pieces):
            if self._mix is None and self._unk and -math.inf not in piece.logprobs:
                # Every word counts (OOVs as <unk>) and none has probability zero: the total
                # is the tokens' sum, without a WordScore per word.
                self._known[text] = sum(piece.logprobs) / LN10
                continue
            words = piece_words(piece, unk=self._unk)
            if self._mix is not None:
                self._mix.apply(words)
            self._known[text] = sentence_log10(words)
        return self._known.answers(texts)
