"""examples/kaldi/rescore_nbest.sh, run through sh on a hand-made Kaldi n-best list (no Kaldi needed):
its costs are checked against the model's forward pass and its best hypotheses against those costs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_model
from eval_support import V, WORDS, token_logprobs, write
from eval_support import random_lm, word_tok  # noqa: F401

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "kaldi" / "rescore_nbest.sh"
TABLE = "<eps> 0\nthe 1\ndog 2\ncat 3\nruns 4\nzebra 5\n<s> 6\n</s> 7\n#0 8\n"
# As nbest-to-linear writes them: keys UTT-N, word ids; u2-2 holds the OOV zebra (5).
IDS = {"u1-1": [1, 2, 4], "u1-2": [1, 3], "u2-1": [3, 4], "u2-2": [1, 2, 4, 5]}
AC = {"u1-1": 40.0, "u1-2": 35.0, "u2-1": 31.0, "u2-2": 30.0}
LM = {"u1-1": 9.0, "u1-2": 7.5, "u2-1": 8.0, "u2-2": 12.0}


@pytest.mark.slow  # one subprocess: a Python start and a torch import
def test_the_example_chain_gives_costs_and_best_text(random_lm, tmp_path):
    table = {int(i): w for w, i in (line.split() for line in TABLE.splitlines())}
    write(tmp_path / "words.txt", TABLE)
    write(tmp_path / "words.ids", "".join(f"{k} {' '.join(map(str, v))}\n" for k, v in IDS.items()))
    write(tmp_path / "ac.cost", "".join(f"{k} {v}\n" for k, v in AC.items()))
    write(tmp_path / "lm.cost", "".join(f"{k} {v}\n" for k, v in LM.items()))
    env = {**os.environ, "RNNLM": f"{sys.executable} -m rnnlm_cli", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["sh", str(SCRIPT), str(random_lm), str(tmp_path), "0.7", "0.1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    model_ids = {k: [WORDS.index(table[i]) if table[i] in WORDS else 1 for i in v] for k, v in IDS.items()}
    forward = dict(zip(model_ids, token_logprobs(tiny_model(V, seed=5), list(model_ids.values()), carry=False)))
    tokens = {line.split()[0]: [float(x) for x in line.split()[1:]]
              for line in (tmp_path / "rnnlm.tokens").read_text().splitlines()}
    assert list(tokens) == list(IDS)
    for key, values in tokens.items():
        assert values == pytest.approx([-x for x in forward[key]], abs=6e-5)

    rnnlm_cost = {k: -sum(v) for k, v in forward.items()}
    totals = {k: 0.1 * AC[k] + 0.3 * LM[k] + 0.7 * rnnlm_cost[k] for k in IDS}
    shown = {line.split()[0]: float(line.split()[1]) for line in (tmp_path / "total.cost").read_text().splitlines()}
    assert shown == pytest.approx(totals, abs=1e-3)

    best = {}
    for key in IDS:
        utt = key.rsplit("-", 1)[0]
        if utt not in best or totals[key] < totals[best[utt]]:
            best[utt] = key
    assert min(abs(totals["u1-1"] - totals["u1-2"]), abs(totals["u2-1"] - totals["u2-2"])) > 0.01
    expected = "".join(f"{utt} {' '.join(table[i] for i in IDS[key])}\n" for utt, key in best.items())
    assert (tmp_path / "best.text").read_text() == expected


@pytest.mark.slow  # one subprocess: a Python start and a torch import
def test_a_failing_chain_leaves_the_previous_outputs_whole(random_lm, tmp_path):
    write(tmp_path / "words.txt", TABLE)
    write(tmp_path / "words.ids", "".join(f"{k} {' '.join(map(str, v))}\n" for k, v in IDS.items()))
    write(tmp_path / "ac.cost", "".join(f"{k} {v}\n" for k, v in AC.items() if k != "u2-2"))  # u2-2 has no cost
    write(tmp_path / "lm.cost", "".join(f"{k} {v}\n" for k, v in LM.items()))
    previous = {name: f"previous {name}\n" for name in ("rnnlm.tokens", "rnnlm.cost", "total.cost", "best.text")}
    for name, text in previous.items():
        write(tmp_path / name, text)
    env = {**os.environ, "RNNLM": f"{sys.executable} -m rnnlm_cli", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["sh", str(SCRIPT), str(random_lm), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 65 and "no cost for u2-2" in done.stderr
    assert {name: (tmp_path / name).read_text() for name in previous} == previous
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
