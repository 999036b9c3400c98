"""ARPA back-off models: reading, the back-off recursion against hand-computed values, refusals."""

from __future__ import annotations

import gzip
import math

import pytest

from rnnlm_cli.score.arpa import read_arpa
from rnnlm_cli.errors import DataError, InputMissingError

# Tabs and spaces mixed on purpose: both separate fields.
TRIGRAM = """\
Written by hand; text before \\data\\ is ignored.

\\data\\
ngram 1=6
ngram 2=6
ngram 3=2

\\1-grams:
-1.0\t<unk>\t-0.2
-99\t<s>\t-0.5
-0.69897\t</s>
-0.52288\tthe\t-0.30103
-0.69897 cat -0.1
-1.0\tsat\t-0.25

\\2-grams:
-0.3\t<s> the\t-0.2
-0.4\tthe cat\t-0.15
-0.5\tcat sat
-0.2\tsat </s>
-0.6\tthe sat
-0.4 <unk> sat

\\3-grams:
-0.1\t<s> the cat
-0.05\tthe cat sat

\\end\\
"""

# No <unk>: unknown words cannot be predicted.
BIGRAM = """\
\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-99 <s> -0.4
-0.5 </s>
-0.6 a -0.3
-0.7 b

\\2-grams:
-0.2 <s> a
-0.1 a b
\\end\\
"""


@pytest.fixture
def trigram(tmp_path):
    path = tmp_path / "tri.arpa"
    path.write_text(TRIGRAM, encoding="utf-8")
    return read_arpa(str(path))


@pytest.fixture
def bigram(tmp_path):
    path = tmp_path / "bi.arpa"
    path.write_text(BIGRAM, encoding="utf-8")
    return read_arpa(str(path))


def test_header_and_vocabulary(trigram, bigram):
    assert (trigram.order, trigram.counts, trigram.has_unk) == (3, (6, 6, 2), True)
    assert (bigram.order, bigram.counts, bigram.has_unk) == (2, (4, 2), False)
    assert "cat" in trigram and "<s>" in trigram and "dog" not in trigram and "cat sat" not in trigram


def test_listed_ngrams(trigram):
    assert trigram.logprob("cat", ["<s>", "the"]) == pytest.approx(-0.1)
    assert trigram.logprob("sat", ["the", "cat"]) == pytest.approx(-0.05)
    assert trigram.logprob("sat", ["cat"]) == pytest.approx(-0.5)
    assert trigram.logprob("the", []) == pytest.approx(-0.52288)
    assert trigram.logprob("<s>", []) == pytest.approx(-99)


def test_backed_off_ngrams(trigram):
    # (<s> the sat) unlisted: backoff(<s> the) + P(sat | the) = -0.2 + -0.6
    assert trigram.logprob("sat", ["<s>", "the"]) == pytest.approx(-0.8)
    # (the cat </s>) and (cat </s>) unlisted: backoff(the cat) + backoff(cat) + P(</s>)
    # = -0.15 + -0.1 + -0.69897
    assert trigram.logprob("</s>", ["the", "cat"]) == pytest.approx(-0.94897)
    # Context (sat cat) unlisted, so its backoff is 0: 0 + backoff(cat) + P(the) = -0.1 + -0.52288
    assert trigram.logprob("the", ["sat", "cat"]) == pytest.approx(-0.62288)
    # (cat sat) is listed without a backoff weight, which is then 0: P(</s> | sat) = -0.2
    assert trigram.logprob("</s>", ["cat", "sat"]) == pytest.approx(-0.2)


def test_only_the_last_order_minus_one_context_words_count(trigram):
    assert trigram.logprob("cat", ["sat", "sat", "<s>", "the"]) == pytest.approx(-0.1)
    assert trigram.logprob("sat", ["<s>", "<s>", "the"]) == pytest.approx(-0.8)


def test_bigram_backoff_and_unknown_words_without_unk(bigram):
    # backoff(a) + P(a) = -0.3 + -0.6
    assert bigram.logprob("a", ["a"]) == pytest.approx(-0.9)
    assert bigram.logprob("b", ["<s>", "a"]) == pytest.approx(-0.1)
    assert bigram.logprob("zzz", ["a"]) == -math.inf
    # An unknown context word matches no n-gram and has no backoff: P(b) alone.
    assert bigram.logprob("b", ["zzz"]) == pytest.approx(-0.7)
    # <s> b: backoff(<s>) + P(b) = -0.4 + -0.7; b </s> likewise unlisted, b has no backoff: P(</s>)
    assert bigram.sentence_logprobs(["b"]) == pytest.approx([-1.1, -0.5])
    scores = bigram.sentence_logprobs(["a", "zzz", "b"])
    # P(a | <s>), unknown, P(b) after an unknown word, then backoff(b) = 0 + P(</s>)
    assert scores[0] == pytest.approx(-0.2) and scores[1] == -math.inf
    assert scores[2:] == pytest.approx([-0.7, -0.5])


def test_unknown_words_read_as_unk(trigram):
    # (the <unk>) unlisted: backoff(the) + P(<unk>) = -0.30103 + -1.0
    assert trigram.logprob("dog", ["the"]) == pytest.approx(-1.30103)
    assert trigram.logprob("dog", ["the"]) == trigram.logprob("<unk>", ["the"])
    # (the <unk> sat) unlisted, context (the <unk>) unlisted -> 0, then the bigram (<unk> sat)
    assert trigram.logprob("sat", ["the", "dog"]) == pytest.approx(-0.4)


def test_sentence_logprobs_score_each_word_then_end(trigram):
    # P(the | <s>) = -0.3; P(cat | <s> the) = -0.1; P(sat | the cat) = -0.05;
    # P(</s> | cat sat): trigram unlisted, (cat sat) has backoff 0, bigram (sat </s>) = -0.2
    assert trigram.sentence_logprobs(["the", "cat", "sat"]) == pytest.approx([-0.3, -0.1, -0.05, -0.2])
    # An empty line is just </s> after <s>: backoff(<s>) + P(</s>) = -0.5 + -0.69897
    assert trigram.sentence_logprobs([]) == pytest.approx([-1.19897])


def test_gzip_crlf_and_bom_read_the_same(tmp_path, trigram):
    gz = tmp_path / "tri.arpa.gz"
    with gzip.open(gz, "wb") as handle:
        handle.write(b"\xef\xbb\xbf" + TRIGRAM.replace("\n", "\r\n").encode("utf-8"))
    model = read_arpa(str(gz))
    assert model.counts == trigram.counts
    line = ["the", "dog", "sat", "the", "cat"]
    assert model.sentence_logprobs(line) == trigram.sentence_logprobs(line)


def test_unigram_model(tmp_path):
    path = tmp_path / "uni.arpa"
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.3 a\n-0.2 </s>\n\n\\end\\\n", encoding="utf-8")
    model = read_arpa(str(path))
    assert model.order == 1
    assert model.logprob("a", ["a", "a"]) == pytest.approx(-0.3)
    assert model.sentence_logprobs(["a"]) == pytest.approx([-0.3, -0.2])


def test_missing_file(tmp_path):
    with pytest.raises(InputMissingError):
        read_arpa(str(tmp_path / "none.arpa"))


def _edit(old, new):
    assert old in TRIGRAM
    return TRIGRAM.replace(old, new, 1)


@pytest.mark.parametrize("text, where, says", [
    (_edit("ngram 2=6", "ngram 2=7"), ":16:", "has 6 entries"),
    (_edit("-0.4\tthe cat\t-0.15", "-0.4\tthe"), ":18:", "found 2 fields"),
    (_edit("-0.5\tcat sat", "oops\tcat sat"), ":19:", "log10 probability"),
    (_edit("-0.5\tcat sat", "nan\tcat sat"), ":19:", "not a probability"),
    (_edit("-0.4\tthe cat\t-0.15", "-0.4\tthe cat\tx"), ":18:", "back-off weight"),
    (_edit("-0.6\tthe sat", "-0.6\tthe dog"), ":21:", "'dog' is not among the unigrams"),
    (_edit("-0.6\tthe sat", "-0.6\tthe cat"), ":21:", "listed twice"),
    (_edit("-1.0\tsat\t-0.25", "-1.0\tcat\t-0.25"), ":14:", "listed twice"),
    (_edit("ngram 3=2", "ngram three=2"), ":6:", "ngram N=count"),
    (_edit("ngram 2=6", "ngram 3=6"), ":5:", "order 2"),
    (_edit("\\2-grams:", "\\3-grams:"), ":16:", "expected \\2-grams:"),
    (TRIGRAM.replace("\\3-grams:\n-0.1\t<s> the cat\n-0.05\tthe cat sat\n\n", ""), ":24:", "expected \\3-grams:"),
    (_edit("\\end\\", "\\4-grams:"), ":28:", "expected \\end\\"),
    (TRIGRAM.replace("\\end\\\n", ""), "tri.arpa:", "before \\end\\"),
    (_edit("\\data\\\n", "data\n"), "tri.arpa:", "no \\data\\"),
    (_edit("ngram 1=6", "ngram 1=0"), ":8:", "no unigrams"),
], ids=["count", "fields", "prob", "nan", "backoff", "oov", "repeat", "repeat-unigram", "count-line",
        "count-order", "section-order", "missing-section", "extra-section", "no-end", "no-data", "no-unigrams"])
def test_malformed_files_name_the_line(tmp_path, text, where, says):
    path = tmp_path / "tri.arpa"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_arpa(str(path))
    message = str(caught.value)
    assert where in message and says in message, message


def test_invalid_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.arpa"
    path.write_bytes(TRIGRAM.replace("cat", "caf\u00e9").encode("latin-1"))
    with pytest.raises(DataError, match="invalid UTF-8"):
        read_arpa(str(path))
