"""Every integer field of every text format read is bounded: a field of thousands of digits
(beyond Python's 4,300-digit conversion limit) is a one-line data error naming the file and
line, never an internal error. One case per reader; each field holds 5,000 digits."""

from __future__ import annotations

import pytest

from rnnlm_cli.errors import DataError
from rnnlm_cli.score.arpa import read_arpa
from rnnlm_cli.score.nbest import iter_nbest
from rnnlm_cli.score.pairs import read_pairs
from rnnlm_cli.text.reading import MAX_DIGITS, natural
from rnnlm_cli.text.symbol_tables import read_symbol_table

HUGE = "9" * 5000
ARPA = "\\data\\\nngram 1={count}\n\n\\1-grams:\n-1.0 </s>\n-99 <s>\n-0.5 the\n\n\\end\\\n"

CASES = {
    "symbol table id": (read_symbol_table, "<eps> 0\nthe {huge}\n", ":2:"),
    "ARPA count": (read_arpa, ARPA.replace("{count}", "{huge}"), ":2:"),
    "ARPA order": (read_arpa, "\\data\\\nngram {huge}=3\n", ":2:"),
    "SRILM NWORDS": (lambda p: list(iter_nbest(p, "srilm")), "u1 -1 -2 1 the\nu1 -1 -2 {huge} the\n", ":2:"),
    "Kaldi rank": (lambda p: list(iter_nbest(p, "kaldi")), "u1-1 the\nu1-{huge} the\n", ":2:"),
    "pairs distance": (lambda p: list(read_pairs(p)), "a b\tb a\tx\t3\na b\tb a\tx\t{huge}\n", ":2:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_integer_of_thousands_of_digits_is_a_data_error_naming_the_line(tmp_path, case):
    read, text, where = CASES[case]
    path = tmp_path / "input.txt"
    path.write_text(text.replace("{huge}", HUGE))
    with pytest.raises(DataError) as caught:
        read(str(path))
    message = str(caught.value)
    assert f"{path}{where}" in message and len(message) < 300, message


def test_the_bound_takes_every_64_bit_count():
    assert natural("9" * MAX_DIGITS, "f:1", "the id") == 10 ** MAX_DIGITS - 1 < 2 ** 63
    with pytest.raises(DataError, match="f:1: the id 999999999999... has 19 digits"):
        natural("9" * (MAX_DIGITS + 1), "f:1", "the id")


def test_a_word_id_of_thousands_of_digits_is_not_an_id_of_the_table(tmp_path):
    from rnnlm_cli.score.kaldi import ids_to_words
    from rnnlm_cli.text.symbol_tables import is_kaldi_non_word

    path = tmp_path / "words.ids"
    path.write_text(f"u1-1 5 {HUGE}\n")
    (nbest_list,) = iter_nbest(str(path), "kaldi")
    with pytest.raises(DataError, match=r"words\.ids:1: '9999.*' in 'u1-1' is not an id of words\.txt"):
        ids_to_words(nbest_list, {5: "the"}, is_kaldi_non_word, "words.txt", "words.ids")
