"""``rnnlm eval --nbest ... --references ... --tune``: the table, its JSON and plot, and the
flags it prints, which must pick, through plain rescoring, transcripts of the WER it reports
(counted here by jiwer on those transcripts, independently of the search)."""

from __future__ import annotations

import json
import re

import jiwer
import pytest

from conftest import one_error_line
from eval_support import ok, run, usage_error, write
from eval_support import random_lm, word_tok  # noqa: F401
from test_eval_rescoring import ARPA

# Two hypotheses or more per utterance of words the model knows; rank 1 is not always right.
NBEST = """\
u1-1 the dog runs .
u1-2 the cat runs .
u1-3 the dog .
u2-1 dog runs the .
u2-2 the dog runs .
u3-1 the cat .
u3-2 the cat runs .
u3-3 cat cat runs .
u4-1 the . .
u4-2 the cat runs
"""
COSTS = """\
u1-1 2.0
u1-2 2.5
u1-3 1.5
u2-1 1.0
u2-2 3.0
u3-1 1.0
u3-2 1.2
u3-3 4.0
u4-1 0.5
u4-2 2.0
"""
REFERENCES = "u1 the cat runs .\nu2 the dog runs .\nu3 the cat runs .\nu4 the cat runs .\n"


@pytest.fixture
def tuning_set(tmp_path):
    return (write(tmp_path / "dev.nbest", NBEST), write(tmp_path / "dev.cost", COSTS),
            write(tmp_path / "dev.text", REFERENCES))


def tune_args(tuning_set, *extra):
    nbest, costs, references = tuning_set
    return ["--nbest", nbest, "--nbest-acoustic", costs, "--references", references, "--tune", *extra]


def jiwer_wer_of_flags(model, tuning_set, flags: str, *extra) -> float:
    """Rescore with ``flags`` and count the WER of the chosen transcripts with jiwer."""
    nbest, costs, references = tuning_set
    best = ok(model, "--nbest", nbest, "--nbest-acoustic", costs, "--nbest-best", *flags.split(), *extra).stdout
    chosen = dict((line.split(" ", 1) + [""])[:2] for line in best.splitlines())
    truth = dict(line.split(" ", 1) for line in REFERENCES.splitlines())
    return jiwer.wer([truth[u] for u in truth], [chosen[u] for u in truth])


def rows(stdout: str) -> dict[str, tuple[float, int, str]]:
    """The table's rows: label -> (WER, errors, flags)."""
    found = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\S.*?)\s+([0-9.]+)%\s+([0-9,]+)(?:\s+(--.*))?", line)
        if match:
            found[match.group(1)] = (float(match.group(2)) / 100, int(match.group(3).replace(",", "")),
                                     match.group(4) or "")
    return found


def test_the_table_and_its_flags_agree_with_rescoring(random_lm, tuning_set):
    out = ok(random_lm, *tune_args(tuning_set)).stdout
    assert out.splitlines()[0].endswith("dev.nbest: 4 utterances, 10 hypotheses, 16 reference words")
    table = rows(out)
    acoustic_wer, acoustic_errors, _ = table["acoustic scores alone"]
    # Rank by cost alone: u1-3 (1 deletion + 1 sub), u2-1 (reordered: 2), u3-1 (1 deletion), u4-1 (2 subs).
    assert acoustic_errors == 2 + 2 + 1 + 2
    assert acoustic_wer == pytest.approx(7 / 16, abs=5e-5)
    assert table["oracle (best of lists)"][1] == 0 + 0 + 0 + 1  # u4's best still lacks its last word
    wer, errors, flags = table["forward model"]
    assert errors <= acoustic_errors
    assert re.fullmatch(r"--lm-weight \S+ --word-penalty \S+", flags)
    assert jiwer_wer_of_flags(random_lm, tuning_set, flags) == pytest.approx(wer, abs=5e-5)
    assert wer == pytest.approx(errors / 16, abs=5e-5)
    assert "WER around the best (rows --lm-weight, columns --word-penalty):" in out


def test_json_holds_the_grid_and_the_best_point(random_lm, tuning_set):
    report = json.loads(ok(random_lm, *tune_args(tuning_set, "--json", "--tune-points", "5")).stdout)
    assert len(report["grid"]["lm_weights"]) == len(report["grid"]["word_penalties"]) == 5
    grid = report["refined"] or report["grid"]  # the finer grid around the first one's best, where there is one
    errors = grid["errors"][0][0]  # no mixture weight, no backward weight
    best = report["best"]
    assert best["errors"] == min(min(row) for row in errors)
    assert best["errors"] <= min(min(row) for row in report["grid"]["errors"][0][0])
    assert errors[grid["lm_weights"].index(best["lm_weight"])][grid["word_penalties"].index(best["word_penalty"])] \
        == best["errors"]
    assert best["wer"] == pytest.approx(best["errors"] / 16)
    assert report["acoustic"]["errors"] == 7 and report["reference_words"] == 16
    assert jiwer_wer_of_flags(random_lm, tuning_set, best["flags"]) == pytest.approx(best["wer"])


def test_the_mixture_weight_is_searched_with_an_ngram_model(random_lm, tuning_set, tmp_path):
    arpa = write(tmp_path / "bigram.arpa", ARPA)
    report = json.loads(ok(random_lm, *tune_args(tuning_set, "--mix-lm", arpa, "--json")).stdout)
    assert report["grid"]["mix_weights"] == [round(0.1 * k, 1) for k in range(11)]
    best = report["best"]
    assert "--lambda" in best["flags"]
    assert jiwer_wer_of_flags(random_lm, tuning_set, best["flags"], "--mix-lm", arpa) == pytest.approx(best["wer"])
    held = json.loads(ok(random_lm, *tune_args(tuning_set, "--mix-lm", arpa, "--lambda", "0.3", "--json")).stdout)
    assert held["grid"]["mix_weights"] == [0.3] and held["best"]["mix_weight"] == 0.3


def test_a_weight_given_is_held(random_lm, tuning_set):
    report = json.loads(ok(random_lm, *tune_args(tuning_set, "--lm-weight", "2", "--json")).stdout)
    assert report["grid"]["lm_weights"] == [2.0]
    assert report["best"]["lm_weight"] == 2.0


@pytest.mark.parametrize("held", [(), ("--lm-weight", "1"), ("--word-penalty", "0")])
def test_plot_is_drawn(random_lm, tuning_set, tmp_path, held):
    pytest.importorskip("matplotlib")
    png = tmp_path / "wer.png"
    ok(random_lm, *tune_args(tuning_set, "--plot", png, *held))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_utterance_without_a_reference_is_a_data_error(random_lm, tuning_set, tmp_path):
    nbest, costs, _ = tuning_set
    references = write(tmp_path / "short.text", "u1 the cat runs .\nu2 the dog runs .\n")
    result = run(random_lm, "--nbest", nbest, "--nbest-acoustic", costs, "--references", references, "--tune")
    assert result.exit_code == 65
    assert "utterance 'u3' has no reference in" in one_error_line(result.stderr)
    assert result.stdout == ""


def test_references_without_a_list_are_noted(random_lm, tuning_set, tmp_path):
    nbest, costs, _ = tuning_set
    references = write(tmp_path / "more.text", REFERENCES + "u9 the dog .\n")
    result = ok(random_lm, "--nbest", nbest, "--nbest-acoustic", costs, "--references", references, "--tune")
    assert "1 of 5 references have no n-best list" in result.stderr


@pytest.mark.parametrize("extra,message", [
    ((), "--tune needs --references"),
    (("--per-sentence",), "--per-sentence does not go with it"),
    (("--debug", "1"), "--debug does not go with it"),
    (("--query",), "--query does not go with it"),
    (("--output", "sentence-scores"), "--output does not go with it"),
    (("--nbest-best",), "--nbest-best does not go with it"),
    (("--lm-weight", "1", "--tune-lm-weights", "0:2"), "a weight given is held"),
    (("--tune-lm-weights", "2:1"), "--tune-lm-weights takes LO:HI"),
    (("--tune-lm-weights", "-1:1"), "--tune-lm-weights must start at 0"),
    (("--tune-points", "1"), "--tune-points must be between 2 and"),
])
def test_tune_refusals(random_lm, tuning_set, extra, message):
    nbest, costs, references = tuning_set
    args = ["--nbest", nbest, "--nbest-acoustic", costs, "--tune", *extra]
    if message != "--tune needs --references":
        args += ["--references", references]
    assert message in usage_error(random_lm, *args)


@pytest.mark.parametrize("args,message", [
    (("--references", "dev.text"), "--references needs --tune"),
    (("--plot", "x.png"), "--plot needs --tune"),
    (("--tune-points", "5"), "--tune-points needs --tune"),
    (("--backward-weight", "0.5"), "--backward-weight needs --backward-model"),
])
def test_options_of_tuning_need_it(random_lm, tuning_set, args, message):
    nbest, _, _ = tuning_set
    assert message in usage_error(random_lm, "--nbest", nbest, *args)


def test_backward_model_interpolates_the_two_scores_in_rescoring(random_lm, word_tok, tmp_path, tuning_set):
    from conftest import tiny_model
    from eval_support import save
    from rnnlm_cli.text.backward import BackwardTokenizer

    other = save(tmp_path / "other.pt", tiny_model(word_tok.vocab_size, seed=9), BackwardTokenizer(word_tok))
    nbest, costs, _ = tuning_set

    def lm_column(*args) -> dict[str, float]:
        out = ok(*args, "--nbest", nbest, "--nbest-acoustic", costs).stdout
        return {line.split()[0]: float(line.split()[3]) for line in out.splitlines()}

    forward, backward = lm_column(random_lm), lm_column(other)
    both = lm_column(random_lm, "--backward-model", other, "--backward-weight", "0.3")
    assert both.keys() == forward.keys()
    for key in both:
        assert both[key] == pytest.approx(0.7 * forward[key] + 0.3 * backward[key], abs=3e-5)  # 6 significant digits each
    assert lm_column(random_lm, "--backward-model", other, "--backward-weight", "1") == backward


def test_tuning_with_a_backward_model_searches_its_weight(random_lm, word_tok, tmp_path, tuning_set):
    from conftest import tiny_model
    from eval_support import save
    from rnnlm_cli.text.backward import BackwardTokenizer

    back = save(tmp_path / "back.pt", tiny_model(word_tok.vocab_size, seed=4), BackwardTokenizer(word_tok))
    result = ok(random_lm, *tune_args(tuning_set, "--backward-model", back, "--json"))
    assert "reads left to right" not in result.stderr
    report = json.loads(result.stdout)
    assert report["grid"]["backward_weights"] == [round(0.1 * k, 1) for k in range(11)]
    assert report["forward_best"]["backward_weight"] == 0.0
    grid = report["refined"] or report["grid"]
    zero = grid["backward_weights"].index(0.0)
    assert report["forward_best"]["errors"] == min(min(row) for row in grid["errors"][0][zero])
    assert report["best"]["errors"] == min(min(row) for share in grid["errors"][0] for row in share)
    flags = report["best"]["flags"]
    # Weight 0 is the forward model alone: its flags leave the backward model out.
    assert ("--backward-weight" in flags) == (report["best"]["backward_weight"] != 0)
    extra = ("--backward-model", back) if report["best"]["backward_weight"] else ()
    assert jiwer_wer_of_flags(random_lm, tuning_set, flags, *extra) == pytest.approx(report["best"]["wer"])
    table = rows(ok(random_lm, *tune_args(tuning_set, "--backward-model", back)).stdout)
    with_backward = {"forward model", "forward model + backward"} if report["best"]["backward_weight"] else \
        {"forward model"}
    assert set(table) - {"acoustic scores alone", "oracle (best of lists)"} == with_backward


def test_a_forward_model_as_backward_model_is_warned_of(random_lm, tuning_set):
    nbest, costs, _ = tuning_set
    result = ok(random_lm, "--nbest", nbest, "--nbest-acoustic", costs, "--backward-model", random_lm)
    assert "reads left to right (trained without --reverse)" in result.stderr


def test_srilm_lists_and_kaldi_ids_tune_alike(random_lm, tuning_set, tmp_path):
    """The same lists as SRILM lines (acoustic log10 = -cost / ln 10, the old LM score ignored) and
    as Kaldi word ids with a symbol table give the table the Kaldi word lists give."""
    import math

    nbest, costs, references = tuning_set
    cost_of = dict(line.split() for line in COSTS.splitlines())
    srilm, ids = [], []
    table = {word: index for index, word in enumerate(["<eps>", "the", "dog", "cat", "runs", "."], start=0)}
    for line in NBEST.splitlines():
        key, *words = line.split()
        utterance = key.rsplit("-", 1)[0]
        srilm.append(f"{utterance} {-float(cost_of[key]) / math.log(10):.17g} -99 {len(words)} {' '.join(words)}")
        ids.append(" ".join([key, *(str(table[word]) for word in words)]))
    symbols = write(tmp_path / "words.txt", "".join(f"{word} {index}\n" for word, index in table.items()))
    expected = json.loads(ok(random_lm, *tune_args(tuning_set, "--json")).stdout)
    from_srilm = json.loads(ok(random_lm, "--nbest", write(tmp_path / "h.srilm", "\n".join(srilm) + "\n"),
                               "--references", references, "--tune", "--json").stdout)
    from_ids = json.loads(ok(random_lm, "--nbest", write(tmp_path / "h.ids", "\n".join(ids) + "\n"),
                             "--nbest-acoustic", costs, "--symbols", symbols, "--references", references,
                             "--tune", "--json").stdout)
    for report in (from_srilm, from_ids):
        assert report["grid"]["errors"] == expected["grid"]["errors"]
        assert report["best"] == expected["best"]


def test_ids_with_a_symbol_table_rescore_with_the_backward_model_as_tuned(random_lm, word_tok, tmp_path, tuning_set):
    from conftest import tiny_model
    from eval_support import save
    from rnnlm_cli.text.backward import BackwardTokenizer

    back = save(tmp_path / "back.pt", tiny_model(word_tok.vocab_size, seed=4), BackwardTokenizer(word_tok))
    _, costs, references = tuning_set
    table = {word: index for index, word in enumerate(["<eps>", "the", "dog", "cat", "runs", "."])}
    symbols = write(tmp_path / "words.txt", "".join(f"{word} {index}\n" for word, index in table.items()))
    ids = write(tmp_path / "h.ids", "".join(" ".join([key, *(str(table[w]) for w in words)]) + "\n"
                                            for key, *words in map(str.split, NBEST.splitlines())))
    common = ["--nbest", ids, "--nbest-acoustic", costs, "--symbols", symbols, "--backward-model", back]
    report = json.loads(ok(random_lm, *common, "--references", references, "--tune", "--backward-weight", "0.6",
                           "--json").stdout)
    best = ok(random_lm, *common, *report["best"]["flags"].split(), "--backward-weight", "0.6",
              "--nbest-best").stdout
    chosen = dict((line.split(" ", 1) + [""])[:2] for line in best.splitlines())
    truth = dict(line.split(" ", 1) for line in REFERENCES.splitlines())
    assert jiwer.wer([truth[u] for u in truth], [chosen[u] for u in truth]) == pytest.approx(report["best"]["wer"])
