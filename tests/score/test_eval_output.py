"""What ``rnnlm eval`` prints: SRILM's debug layout, words of several tokens, OOVs and
unknown pieces, query mode, and the options that exclude each other. See eval_support for
how the expected figures are known."""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from rnnlm_cli.score.evaluate import evaluate_file
from rnnlm_cli.text.tokenizers import CharTokenizer

from conftest import tiny_model
from eval_support import LOG_P, P, V, WORDS, g, ok, save, token_logprobs, uniform, usage_error, write
# Fixtures are found by name in the test module, the ones they request among them.
from eval_support import random_lm, uniform_lm, word_tok  # noqa: F401

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent
CHARS = ["<eos>", "<unk>", " ", "a", "b", "c", "d"]


# ---------------------------------------------------------------- SRILM's debug layout


DEBUG_TEXT = "the dog zebra runs\ncat .\n"


def word(order: int) -> str:
    """SRILM's value fields of a scored word: the tag (the n-gram order, here the sentence so far), P, log10 P."""
    return f"[{order}gram] {g(P)} [ {g(LOG_P)} ]"


SENTENCE_1 = ["the dog zebra runs",
              f"\tp( the | <s> ) \t= {word(2)}",
              f"\tp( dog | the ...) \t= {word(3)}",
              "\tp( zebra | dog ...) \t= [OOV] 0 [ -inf ]",
              f"\tp( runs | zebra ...) \t= {word(5)}",
              f"\tp( </s> | runs ...) \t= {word(6)}",
              "1 sentences, 4 words, 1 OOVs",
              # 4 scored (the, dog, runs, </s>); ppl over 4 - 1 + 1, ppl1 over 4 - 1.
              f"0 zeroprobs, logprob= {g(4 * LOG_P)} ppl= 7 ppl1= {g(7 ** (4 / 3))}",
              ""]
SENTENCE_2 = ["cat .",
              f"\tp( cat | <s> ) \t= {word(2)}",
              f"\tp( . | cat ...) \t= {word(3)}",
              f"\tp( </s> | . ...) \t= {word(4)}",
              "1 sentences, 2 words, 0 OOVs",
              f"0 zeroprobs, logprob= {g(3 * LOG_P)} ppl= 7 ppl1= {g(7 ** (3 / 2))}",
              ""]


def file_lines(name) -> list[str]:
    # 7 scored of 6 words + 2 line ends, one OOV: ppl over 6 - 1 + 2, ppl1 over 6 - 1.
    return [f"file {name}: 2 sentences, 6 words, 1 OOVs",
            f"0 zeroprobs, logprob= {g(7 * LOG_P)} ppl= 7 ppl1= {g(7 ** (7 / 5))}"]


def test_debug_2_prints_every_word_in_srilm_layout(uniform_lm, tmp_path):
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    result = ok(uniform_lm, text, "--debug", "2")
    assert result.stdout.split("\n") == [*SENTENCE_1, *SENTENCE_2, *file_lines(text), ""]


def test_debug_2_reads_by_field_position_as_srilm_output_does(random_lm, tmp_path):
    """What a script written for ``ngram -debug 2`` does: split on blanks, take fields 2, 7, 8, 10."""
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    result = ok(random_lm, "-", "--debug", "2", input=open(text).read())
    words = [line.split() for line in result.stdout.splitlines() if line.startswith("\tp( ")]
    assert len(words) == 8 and all(len(fields) == 11 for fields in words)
    assert [f[1] for f in words] == ["the", "dog", "zebra", "runs", "</s>", "cat", ".", "</s>"]
    assert [f[6] for f in words] == ["[2gram]", "[3gram]", "[OOV]", "[5gram]", "[6gram]", "[2gram]", "[3gram]", "[4gram]"]
    total = 0.0
    for fields in words:
        assert fields[5] == "=" and fields[8] == "[" and fields[10] == "]"
        if fields[6] == "[OOV]":
            assert (fields[7], fields[9]) == ("0", "-inf")
            continue
        assert float(fields[7]) == pytest.approx(10 ** float(fields[9]), rel=1e-4)
        total += float(fields[9])
    # The summary agrees with the words, and stdin is named as SRILM names it.
    assert "file -: 2 sentences, 6 words, 1 OOVs" in result.stdout
    logprob = float(result.stdout.split("logprob= ")[-1].split()[0])
    assert logprob == pytest.approx(total, abs=1e-3)


def test_debug_1_prints_sentences_without_words(uniform_lm, tmp_path):
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    result = ok(uniform_lm, text, "--debug", "1")
    sentences = [line for line in SENTENCE_1 + SENTENCE_2 if not line.startswith("\tp( ")]
    assert result.stdout.split("\n") == [*sentences, *file_lines(text), ""]


def test_debug_0_prints_the_file_totals_only(uniform_lm, tmp_path):
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    assert ok(uniform_lm, text, "--debug", "0").stdout.split("\n") == [*file_lines(text), ""]


def test_debug_level_out_of_range_is_a_usage_error(uniform_lm, tmp_path):
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    assert "--debug" in usage_error(uniform_lm, text, "--debug", "3")


# ---------------------------------------------------------------- words of several tokens


CHAR_LINES = ["ab  c", " d a ", "ba"]
# Whitespace belongs to the word after it; trailing whitespace to the last word.
CHAR_OWNERS = [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0]]
CHAR_WORDS = [["ab", "c"], ["d", "a"], ["ba"]]


def test_char_model_scores_each_word_as_the_sum_of_its_characters(tmp_path):
    tokenizer = CharTokenizer(CHARS)
    model = tiny_model(len(CHARS), seed=3)
    text = write(tmp_path / "t.txt", "".join(line + "\n" for line in CHAR_LINES))
    ids = [[CHARS.index(char) for char in line] for line in CHAR_LINES]
    expected = []
    for owners, logprobs in zip(CHAR_OWNERS, token_logprobs(model, ids, carry=True)):
        sums = [0.0] * (max(owners) + 1)
        for owner, value in zip(owners, logprobs):
            sums[owner] += value
        expected.append([s / math.log(10) for s in sums] + [logprobs[-1] / math.log(10)])
    seen = []
    evaluate_file(model, tokenizer, str(text), CPU,
                  on_words=lambda _, words, ends: seen.append([(w.word, w.log10, w.tokens) for w in words]))
    assert [[word for word, _, _ in line] for line in seen] == [words + ["</s>"] for words in CHAR_WORDS]
    assert [[tokens for _, _, tokens in line] for line in seen] == [[2, 3, 1], [2, 3, 1], [2, 1]]
    for got, want in zip(seen, expected):
        assert [value for _, value, _ in got] == pytest.approx(want, abs=1e-6)

    checkpoint = save(tmp_path / "char.pt", model, tokenizer)
    lines = ok(checkpoint, text, "--debug", "2").stdout.splitlines()
    # The model computes in float32: the printed digits agree to about the sixth.
    word = [line for line in lines if line.startswith("\tp( c | ab ...) \t= ")]
    assert len(word) == 1
    _, value, log10 = word[0].split("= ")[1].replace("[", "").replace("]", "").split()  # tag, P, log10 P
    assert float(log10) == pytest.approx(expected[0][1], rel=1e-5)
    assert float(value) == pytest.approx(10 ** expected[0][1], rel=1e-5)
    # Per word, as SRILM: 5 words and 3 line ends, the whole text's log10 probability.
    assert lines[-2] == f"file {text}: 3 sentences, 5 words, 0 OOVs"
    logprob = float(lines[-1].split("logprob= ")[1].split()[0])
    assert logprob == pytest.approx(sum(map(sum, expected)), rel=1e-5)


# ---------------------------------------------------------------- OOVs and unknown tokens


def test_oov_words_are_left_out_unless_unk_scores_them(uniform_lm, tmp_path):
    text = write(tmp_path / "t.txt", "the zebra runs\n")
    left_out = json.loads(ok(uniform_lm, text, "--json").stdout)
    assert (left_out["words"], left_out["oovs"], left_out["sentences"]) == (3, 1, 1)
    assert left_out["logprob"] == pytest.approx(3 * LOG_P)  # the, runs, </s>
    assert left_out["ppl"] == pytest.approx(7)  # 3 scored over 3 - 1 + 1
    assert left_out["ppl1"] == pytest.approx(7 ** 1.5)
    scored = json.loads(ok(uniform_lm, text, "--json", "--unk").stdout)
    assert (scored["words"], scored["oovs"]) == (3, 0)
    assert scored["logprob"] == pytest.approx(4 * LOG_P)
    assert scored["ppl"] == pytest.approx(7) and scored["ppl1"] == pytest.approx(7 ** (4 / 3))


def test_char_model_reports_unknown_characters(tmp_path):
    tokenizer = CharTokenizer(CHARS)
    model = save(tmp_path / "char.pt", uniform(len(CHARS)), tokenizer)
    text = write(tmp_path / "t.txt", "az b\nab\n")  # "z" is not a character of the vocabulary
    result = ok(model, text, "--json")
    report = json.loads(result.stdout)
    assert (report["encoded_tokens"], report["unk_tokens"], report["byte_fallback_tokens"]) == (6, 1, 0)
    assert report["unk_rate"] == pytest.approx(1 / 6)
    assert report["byte_fallback_rate"] == 0
    # The word "az" is not an OOV: its characters, <unk> among them, are scored.
    assert report["oovs"] == 0
    assert report["logprob"] == pytest.approx(8 * math.log10(1 / len(CHARS)))
    assert f"{text}: 1 <unk> and 0 byte-fallback tokens of 6 (16.67%)" in result.stderr.splitlines()


def test_sentencepiece_model_reports_byte_fallback(tmp_path):
    from rnnlm_cli.config import TokenizerConfig
    from rnnlm_cli.text.sentencepiece_tokenizer import train_sentencepiece

    corpus = ["the dog runs", "a cat sees the dog", "the cats see a dog"] * 20
    tokenizer = train_sentencepiece(corpus, TokenizerConfig(kind="sentencepiece", vocab_size=280, model_type="bpe"))
    model = save(tmp_path / "sp.pt", tiny_model(tokenizer.vocab_size), tokenizer)
    line = "the cat \u00e9"  # é, never seen in training, is spelled as its two UTF-8 bytes
    text = write(tmp_path / "t.txt", line + "\n")
    encoded = len(tokenizer.encode(line))
    result = ok(model, text, "--json")
    report = json.loads(result.stdout)
    assert (report["encoded_tokens"], report["byte_fallback_tokens"], report["unk_tokens"]) == (encoded, 2, 0)
    assert report["byte_fallback_rate"] == pytest.approx(2 / encoded)
    assert (report["words"], report["oovs"]) == (3, 0)
    assert f"{text}: 0 <unk> and 2 byte-fallback tokens of {encoded} ({2 / encoded:.2%})" in result.stderr


# ---------------------------------------------------------------- query mode


def _line_reader(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_query_answers_each_line_before_the_next_is_written(uniform_lm):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("RNNLM_DEBUG", None)
    process = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "eval", str(uniform_lm), "-", "--query"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8", cwd=ROOT, env=env)
    try:
        answers = _line_reader(process.stdout)
        expected = {
            "the dog": f"the={g(LOG_P)}\tdog={g(LOG_P)}\t</s>={g(LOG_P)}\tTotal: {g(3 * LOG_P)} OOV: 0",
            "zebra runs": f"zebra=OOV\truns={g(LOG_P)}\t</s>={g(LOG_P)}\tTotal: {g(2 * LOG_P)} OOV: 1",
            "": f"</s>={g(LOG_P)}\tTotal: {g(LOG_P)} OOV: 0",
        }
        for line, answer in expected.items():
            process.stdin.write(line + "\n")
            process.stdin.flush()
            # The input stays open: an answer that waits for more input never comes.
            assert answers.get(timeout=60) == answer + "\n"
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        assert answers.get(timeout=10) is None  # nothing beyond one line per input line
        stderr = process.stderr.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "file -: 3 sentences, 4 words, 1 OOVs" in stderr
    # 6 scored: ppl over 4 - 1 + 3, ppl1 over 4 - 1.
    assert f"0 zeroprobs, logprob= {g(6 * LOG_P)} ppl= 7 ppl1= 49" in stderr


def test_query_per_sentence_prints_one_number_per_line(uniform_lm):
    result = ok(uniform_lm, "-", "--query", "--per-sentence", input="the dog\nzebra runs\n")
    numbers = [float(line) for line in result.stdout.splitlines()]
    assert numbers == pytest.approx([3 * LOG_P, 2 * LOG_P], abs=1e-6)
    assert "file -: 2 sentences, 4 words, 1 OOVs" in result.stderr.splitlines()


def test_query_scores_each_line_alone_unless_the_stream_context_is_asked(random_lm):
    line = "the dog runs"
    alone = ok(random_lm, "-", "--query", input=f"{line}\n{line}\n").stdout.splitlines()
    assert len(alone) == 2 and alone[0] == alone[1]
    ids = [WORDS.index(word) for word in line.split()]
    want = sum(token_logprobs(tiny_model(V, seed=5), [ids], carry=False)[0]) / math.log(10)
    assert alone[0].endswith(f"Total: {g(want)} OOV: 0")
    stream = ok(random_lm, "-", "--query", "--context", "stream", input=f"{line}\n{line}\n").stdout.splitlines()
    assert stream[0] == alone[0] and stream[1] != alone[1]



# ---------------------------------------------------------------- exclusive options


@pytest.mark.parametrize("flags", [("--json", "--debug", "1"), ("--json", "--per-sentence"),
                                   # options that mean something only beside another
                                   ("--lambda", "0.3"), ("--cache-theta", "0.3"), ("--dynamic-lr", "1"),
                                   ("--lm-weight", "2"), ("--nbest-sort",)])
def test_conflicting_options_are_usage_errors(uniform_lm, tmp_path, flags):
    text = write(tmp_path / "t.txt", "the dog\n")
    message = usage_error(uniform_lm, text, *flags)
    assert any(flag in message for flag in flags if flag.startswith("--"))


# ---------------------------------------------------------------- KenLM's query layout


def test_query_in_kenlm_layout_gives_ids_orders_and_kenlms_summary(random_lm, word_tok):
    result = ok(random_lm, "-", "--query", "--format", "kenlm", input="the dog zebra runs\ncat .\n")
    lines = result.stdout.splitlines()
    plain = ok(random_lm, "-", "--query", "--unk", input="the dog zebra runs\ncat .\n").stdout.splitlines()
    ids = {piece: index for index, piece in enumerate(word_tok.pieces)}
    first = lines[0].split("\t")
    words = ["the", "dog", "zebra", "runs", "</s>"]
    fields = [entry.split("=", 1)[1].split() for entry in first[:-1]]
    assert [entry.split("=", 1)[0] for entry in first[:-1]] == words
    assert [f[0] for f in fields] == [str(ids["the"]), str(ids["dog"]), "0", str(ids["runs"]), str(word_tok.eos_id)]
    assert [f[1] for f in fields] == ["2", "3", "1", "5", "6"]  # zebra is KenLM's <unk>: id 0, order 1
    # The same numbers as the srilm layout with --unk, whose OOV count now counts zebra too.
    assert [float(f[2]) for f in fields] == [float(e.split("=")[1]) for e in plain[0].split("\t")[:-1]]
    assert first[-1] == plain[0].split("\t")[-1] and first[-1].endswith("OOV: 1")
    # KenLM's corpus summary ends stdout: 5 + 3 tokens, one OOV.
    total = sum(float(f[2]) for f in fields) + sum(float(e.split("=", 1)[1].split()[2])
                                                   for e in lines[1].split("\t")[:-1])
    zebra = float(fields[2][2])
    assert lines[2:] == [f"Perplexity including OOVs:\t{g(10 ** (-total / 8))}",
                         f"Perplexity excluding OOVs:\t{g(10 ** (-(total - zebra) / 7))}", "OOVs:\t1", "Tokens:\t8"]


def test_kenlm_layout_needs_query_and_a_word_model(random_lm, tmp_path):
    assert "--query" in usage_error(random_lm, "-", "--format", "kenlm")
    chars = save(tmp_path / "char.pt", tiny_model(len(CHARS), seed=3), CharTokenizer(CHARS))
    assert "word model" in usage_error(chars, "-", "--query", "--format", "kenlm")


def test_eval_gives_per_token_figures_beside_the_per_word_lines(random_lm, tmp_path):
    text = write(tmp_path / "t.txt", DEBUG_TEXT)
    report = json.loads(ok(random_lm, text, "--json").stdout)
    assert report["bits_per_token"] == pytest.approx(math.log2(report["token_ppl"]))
    stderr = ok(random_lm, text).stderr
    line = [entry for entry in stderr.splitlines() if ": per token: " in entry]
    assert len(line) == 1
    assert f"{report['tokens']:,} tokens predicted" in line[0]
    assert f"ppl {report['token_ppl']:.2f}, {report['bits_per_token']:.3f} bits per token" in line[0]


def test_a_character_model_reports_bits_per_character(tmp_path):
    model = save(tmp_path / "char.pt", tiny_model(len(CHARS), seed=3), CharTokenizer(CHARS))
    text = write(tmp_path / "t.txt", "ab c\nd\n")
    assert " bits per character" in ok(model, text).stderr
