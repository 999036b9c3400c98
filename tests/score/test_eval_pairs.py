"""``rnnlm eval --pairs``: minimal pairs judged with the scores ``--context sentence
--per-sentence --unk`` gives each line, the table and JSON layouts, stdin and .gz input,
and what is refused. See eval_support for how the expected figures are known."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import tiny_model
from eval_support import WORDS, V, ok, run, save, uniform, usage_error, write
from rnnlm_cli.text.tokenizers import WordTokenizer

PAIRS = ("# good\tbad\tcategory\tdistance\n"
         "the dog runs .\tthe dog dog .\tagreement\t1\n"
         "the cat runs .\tthe dog runs .\tagreement\t3\n"
         "the dog runs .\tthe cat runs .\tagreement\t4\n"
         "\n"
         "the zebra runs\tthe runs zebra\tquestion\t9\n"
         "dog the runs\tthe dog runs\tquestion\n"
         "the dog runs .\tthe dog runs .\tbrackets\t16\n"
         "the dog\tthe dog runs\t\t2\n")
# Each row's category and distance bucket, as this test names them (None: in no group).
GROUPS = [("agreement", "1"), ("agreement", "3-4"), ("agreement", "3-4"), ("question", "9-16"),
          ("question", None), ("brackets", "9-16"), (None, "2")]


@pytest.fixture(scope="module")
def uniform_lm(tmp_path_factory):
    return save(tmp_path_factory.mktemp("uniform") / "model.pt", uniform(V), WordTokenizer(WORDS))


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    """Predictions that depend on the context, so pairs of the same words in another order differ."""
    return save(tmp_path_factory.mktemp("random") / "model.pt", tiny_model(V, seed=5), WordTokenizer(WORDS))


def sentence_scores(model, tmp_path) -> list[tuple[float, float]]:
    """Each pair's (good, bad) log10 scores from ``rnnlm eval --context sentence --per-sentence --unk``."""
    rows = [line.split("\t") for line in PAIRS.splitlines() if line and not line.startswith("#")]
    source = write(tmp_path / "sentences.txt", "".join(f"{row[0]}\n{row[1]}\n" for row in rows))
    scores = list(map(float, ok(model, source, "--context", "sentence", "--per-sentence", "--unk").stdout.split()))
    return list(zip(scores[::2], scores[1::2]))


def expected_tallies(scores: list[tuple[float, float]]) -> dict:
    overall, categories, buckets = [0, 0], {}, {}
    for (good, bad), (category, bucket) in zip(scores, GROUPS, strict=True):
        # The scores are printed to 6 decimals: only a pair of equal sentences may tie.
        assert good == bad or abs(good - bad) > 1e-3
        right = int(good > bad)
        groups = [overall] + ([categories.setdefault(category, [0, 0])] if category else [])
        groups += [buckets.setdefault(bucket, [0, 0])] if bucket else []
        for tally in groups:
            tally[0] += right
            tally[1] += 1
    return {"overall": overall, "categories": categories, "buckets": buckets}


def test_json_tallies_match_per_sentence_scores(random_lm, tmp_path):
    expected = expected_tallies(sentence_scores(random_lm, tmp_path))
    path = write(tmp_path / "pairs.tsv", PAIRS)
    result = ok(random_lm, "--pairs", path, "--json")
    report = json.loads(result.stdout)
    assert set(report) == {"file", "overall", "by_category", "by_distance", "ties", "unknown_pairs"}
    assert report["file"] == str(path)
    correct, total = expected["overall"]
    assert 0 < correct < total  # some right, some wrong: the tallies can tell
    assert report["overall"] == {"correct": correct, "total": total, "accuracy": pytest.approx(correct / total)}
    assert list(report["by_category"]) == ["agreement", "question", "brackets"]
    assert {name: [t["correct"], t["total"]] for name, t in report["by_category"].items()} == expected["categories"]
    for tally in [*report["by_category"].values(), *report["by_distance"]]:
        assert tally["accuracy"] == pytest.approx(tally["correct"] / tally["total"])
    assert [(b["bucket"], b["low"], b["high"]) for b in report["by_distance"]] == [
        ("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("9-16", 9, 16)]
    assert {b["bucket"]: [b["correct"], b["total"]] for b in report["by_distance"]} == expected["buckets"]
    assert report["ties"] == 1 and report["unknown_pairs"] == 1
    assert "1 pair(s) with words or characters outside the model's vocabulary" in result.stderr


def test_plain_table_stdin_and_gz_give_the_same_figures(random_lm, tmp_path):
    plain = write(tmp_path / "pairs.tsv", PAIRS)
    packed = tmp_path / "pairs.tsv.gz"
    packed.write_bytes(gzip.compress(PAIRS.encode("utf-8")))
    reports = [json.loads(ok(random_lm, "--pairs", source, "--json", input=text).stdout)
               for source, text in ((plain, None), (packed, None), ("-", PAIRS))]
    assert reports[1] == {**reports[0], "file": str(packed)}
    assert reports[2] == {**reports[0], "file": "stdin"}
    report = reports[0]
    lines = ok(random_lm, "--pairs", plain).stdout.splitlines()
    overall = report["overall"]
    assert lines[0] == (f"{plain}: {overall['total']} pairs, {overall['correct']} right "
                        f"(accuracy {overall['accuracy']:.4f}), 1 ties")
    assert lines[1].split() == ["group", "right", "total", "accuracy"]
    rows = {name: figures for name, *figures in (line.rsplit(None, 3) for line in lines[2:])}
    shown = {"all": overall, **report["by_category"],
             **{f"distance {b['bucket']}": b for b in report["by_distance"]}}
    assert list(rows) == list(shown)
    for name, tally in shown.items():
        assert rows[name] == [str(tally["correct"]), str(tally["total"]), f"{tally['accuracy']:.4f}"]


def test_a_uniform_model_ties_every_pair_of_equal_length(uniform_lm, tmp_path):
    path = write(tmp_path / "pairs.tsv", "the dog\tthe cat\tx\t1\nthe dog runs\tthe cat\tx\t1\n")
    report = json.loads(ok(uniform_lm, "--pairs", path, "--json").stdout)
    # The longer sentence has one more factor 1/V: the second pair is wrong too.
    assert report["overall"] == {"correct": 0, "total": 2, "accuracy": 0.0}
    assert report["ties"] == 1


ARPA = """\\data\\
ngram 1=6

\\1-grams:
-1.0 </s>
-99 <s>
-0.5 the
-0.8 dog
-2.0 cat
-1.5 runs

\\end\\
"""


def test_mix_lm_judges_with_the_mixture(uniform_lm, tmp_path):
    arpa = write(tmp_path / "unigram.arpa", ARPA)
    # Unigram log10: "the dog runs" -0.5 - 0.8 - 1.5 - 1.0 = -3.8, "the cat runs" -5.0.
    path = write(tmp_path / "pairs.tsv", "the dog runs\tthe cat runs\nthe cat runs\tthe dog runs\n")
    ngram_only = json.loads(ok(uniform_lm, "--pairs", path, "--mix-lm", arpa, "--lambda", "0", "--json").stdout)
    assert ngram_only["overall"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert ngram_only["ties"] == 0
    model_only = json.loads(ok(uniform_lm, "--pairs", path, "--mix-lm", arpa, "--lambda", "1", "--json").stdout)
    assert model_only["overall"]["correct"] == 0 and model_only["ties"] == 2


def test_a_word_of_zero_probability_makes_its_sentence_lose(uniform_lm, tmp_path):
    arpa = write(tmp_path / "unigram.arpa", ARPA)
    # "." is in the model's vocabulary but not the n-gram's: at --lambda 0 its probability is 0, so
    # "the runs ." (-0.5 - 1.5 - 1.0 over its other words) cannot beat "the cat runs" (-5.0).
    path = write(tmp_path / "pairs.tsv", "the cat runs\tthe runs .\n")
    report = json.loads(ok(uniform_lm, "--pairs", path, "--mix-lm", arpa, "--lambda", "0", "--json").stdout)
    assert report["overall"] == {"correct": 1, "total": 1, "accuracy": 1.0}


@pytest.mark.parametrize("line, message", [
    ("just one sentence", "expected good<TAB>bad[<TAB>category[<TAB>distance]], got 1 tab-separated field(s)"),
    ("the dog\tthe cat\tx\tfar", "distance must be a non-negative integer, got 'far'"),
    ("\tthe cat", "empty good sentence"),
])
def test_a_malformed_line_exits_65_with_one_line_naming_it(uniform_lm, tmp_path, line, message):
    path = write(tmp_path / "pairs.tsv", f"# header\nthe dog\tthe cat\n\n{line}\n")
    result = run(uniform_lm, "--pairs", path)
    assert result.exit_code == 65, result.stderr
    assert result.stderr.splitlines() == [f"rnnlm: error: {path}:4: {message}"]
    assert result.stdout == ""


def test_a_file_of_no_pairs_exits_65(uniform_lm, tmp_path):
    path = write(tmp_path / "pairs.tsv", "# only a header\n\n")
    result = run(uniform_lm, "--pairs", path)
    assert result.exit_code == 65
    assert result.stderr.splitlines() == [f"rnnlm: error: {path}: no pairs to score (empty input)"]


@pytest.mark.parametrize("extra, named", [
    (["FILE"], "FILE"),
    (["--nbest", "NBEST"], "--nbest"),
    (["--query"], "--query"),
    (["--per-sentence"], "--per-sentence"),
    (["--context", "sentence"], "--context"),
    (["--cache", "10"], "--cache"),
    (["--dynamic"], "--dynamic"),
    (["--debug", "1"], "--debug"),
])
def test_other_inputs_and_outputs_are_refused_with_pairs(uniform_lm, tmp_path, extra, named):
    path = write(tmp_path / "pairs.tsv", "the dog\tthe cat\n")
    text = write(tmp_path / "text.txt", "the dog\n")
    args = [str(text) if arg in ("FILE", "NBEST") else arg for arg in extra]
    if extra == ["FILE"]:
        line = usage_error(uniform_lm, *args, "--pairs", path)
    else:
        line = usage_error(uniform_lm, "--pairs", path, *args)
    assert f"--pairs reads its own file and scores each sentence alone: {named} does not go with it" in line


def test_a_missing_pair_file_exits_66(uniform_lm, tmp_path):
    result = run(uniform_lm, "--pairs", tmp_path / "nowhere.tsv")
    assert result.exit_code == 66
    assert "no such file" in result.stderr


def test_the_help_explains_ties_and_shows_an_example():
    from typer.testing import CliRunner

    from rnnlm_cli.cli import app

    shown = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).stdout
    text = " ".join(shown.replace("│", " ").split())  # rich draws boxes around the option table
    assert "a tie is wrong" in text
    assert "rnnlm eval runs/sample/model.pt --pairs sample_data/pairs.tsv --json" in text
