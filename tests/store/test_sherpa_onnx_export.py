"""rnnlm export --format sherpa-onnx: the files, run as sherpa-onnx runs them, give eval's scores.

Expected numbers come from ``rnnlm eval --context sentence --per-sentence`` (log10 per line),
never from the exported graphs' own code. The sessions are fed as sherpa-onnx feeds them
(``csrc/offline-lm.cc`` ``ComputeLMScore`` and ``csrc/online-rnn-lm.cc``): inputs by position,
int64 ids of the recogniser's table, hypotheses padded with 0, the sentence start fed first
from zero states.
"""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.store.sherpa_onnx import FILES, export_sherpa_onnx, token_map
from rnnlm_cli.text.tokenizers import tokenizer_from_table

from conftest import cli, console_env, one_error_line

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

WORDS = ["\u2581the", "\u2581dog", "\u2581cat", "s", "\u2581sees", "\u2581a"]
TABLES = {
    # icefall's tokens.txt ('symbol id', so read as a Kaldi table): <sos/eos> is a word to rnnlm
    "icefall": "".join(f"{s} {i}\n" for i, s in enumerate(["<blk>", "<sos/eos>", "<unk>", *WORDS])),
    # an ESPnet token list: <blank> first, <sos/eos> last
    "espnet": "".join(f"{s}\n" for s in ["<blank>", "<unk>", *WORDS, "<sos/eos>"]),
    # a Kaldi words.txt with <s> and </s>, #0 and an unused id (9)
    "kaldi": "".join(f"{s} {i}\n" for s, i in [("<eps>", 0), ("<unk>", 1), *zip(WORDS, range(2, 8)), ("#0", 8),
                                               ("<s>", 10), ("</s>", 11)]),
}
CASES = {
    "lstm": ("icefall", dict(cell="lstm")),
    "gru": ("espnet", dict(cell="gru")),
    "tied-projected": ("kaldi", dict(cell="lstm", tied=True, emb=6, hidden=10)),
    "rnn-adaptive": ("icefall", dict(cell="rnn", adaptive_softmax="4")),
    "mogrifier": ("espnet", dict(cell="mogrifier", mogrifier_rounds=3)),
}
SENTENCES = [
    "\u2581the \u2581dog s \u2581sees \u2581a \u2581cat",
    "\u2581cat",
    "",
    "\u2581a <unk> \u2581sees \u2581the \u2581dog s \u2581the \u2581cat s",
    "\u2581dog \u2581dog",
]
ATOL = 1e-4
INT8_ATOL = 0.05  # per token: dynamic int8 weights of a tiny random model


def _table_ids(table: str) -> dict[str, int]:
    lines = [line.split() for line in table.splitlines()]
    return {f[0]: (int(f[1]) if len(f) == 2 else n) for n, f in enumerate(lines)}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    """A random model built from a recogniser's table, exported by the command; eval's natural-log
    score of each sentence."""
    layout, options = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    (folder / "tokens.txt").write_text(TABLES[layout], encoding="utf-8")
    tokenizer = tokenizer_from_table(str(folder / "tokens.txt"))
    torch.manual_seed(sorted(CASES).index(request.param))
    config = ModelConfig(vocab_size=tokenizer.vocab_size, **{"emb": 8, "hidden": 12, "layers": 2, "dropout": 0.0,
                                                               **options})
    model = build_model(config).eval()
    with torch.no_grad():  # a random model's scores are all alike; spread them
        for weight in model.parameters():
            weight.mul_(4.0)
    save_checkpoint(folder / "lm.pt", model, tokenizer.to_dict())
    result = cli("export", folder / "lm.pt", "--format", "sherpa-onnx", "--out", folder / "exp" / "lm")
    assert result.exit_code == 0, result.stderr
    paths = [str(folder / "exp" / f"lm.{name}") for name in FILES]
    assert result.stdout.splitlines() == paths
    (folder / "text.txt").write_text("".join(line + "\n" for line in SENTENCES), encoding="utf-8")
    scored = cli("eval", folder / "lm.pt", folder / "text.txt", "--context", "sentence", "--per-sentence", "--unk")
    assert scored.exit_code == 0, scored.stderr
    log10 = [float(line) for line in scored.stdout.split()]
    ids = _table_ids(TABLES[layout])
    return {"name": request.param, "paths": dict(zip(FILES, paths)), "config": config, "ids": ids,
            "sentences": [[ids[word] for word in line.split()] for line in SENTENCES],
            "expected": np.array([value * math.log(10) for value in log10]), "folder": folder, "layout": layout}


def _session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _meta(path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(path).metadata_props}


def _rescore(path, sentences: list[list[int]]) -> np.ndarray:
    """-nll of each sentence, as OfflineLM::ComputeLMScore computes it: one batch, padded with 0."""
    session = _session(path)
    longest = max(len(s) for s in sentences)
    x = np.zeros((len(sentences), longest), dtype=np.int64)
    for row, sentence in enumerate(sentences):
        x[row, : len(sentence)] = sentence
    x_lens = np.array([len(s) for s in sentences], dtype=np.int64)
    first, second = (i.name for i in session.get_inputs())
    (nll,) = session.run([session.get_outputs()[0].name], {first: x, second: x_lens})
    assert nll.dtype == np.float32 and nll.shape == (len(sentences),)
    return -nll.astype(np.float64)


def _fused(path, sentence: list[int]) -> float:
    """The log-probability shallow fusion adds up (OnlineRnnLM::ComputeLMScoreSF), plus the end.

    Zero h0 and c0 of the metadata's shape read sos_id; each token adds the previous call's
    log_softmax at its id and is then fed alone, with the states the previous call returned."""
    session, meta = _session(path), _meta(path)
    names = [i.name for i in session.get_inputs()]
    shape = (int(meta["num_layers"]), 1, int(meta["hidden_size"]))
    h, c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    total, token = 0.0, int(meta["sos_id"])
    for following in [*sentence, int(meta["eos_id"])]:
        scores, h, c = session.run(None, dict(zip(names, (np.array([[token]], np.int64), h, c))))
        assert scores.shape == (1, int(meta["vocab_size"]))
        total += float(scores[0, following])
        token = following
    return total


def test_rescoring_model_gives_evals_sentence_scores(exported):
    got = _rescore(exported["paths"]["no-state.onnx"], exported["sentences"])
    np.testing.assert_allclose(got, exported["expected"], rtol=0, atol=ATOL)
    # the batch changes nothing: each sentence alone scores the same
    alone = [_rescore(exported["paths"]["no-state.onnx"], [s])[0] for s in exported["sentences"]]
    np.testing.assert_allclose(alone, got, rtol=0, atol=1e-5)


def test_shallow_fusion_model_stepped_from_sos_gives_evals_scores(exported):
    got = [_fused(exported["paths"]["with-state.onnx"], s) for s in exported["sentences"]]
    np.testing.assert_allclose(got, exported["expected"], rtol=0, atol=ATOL)


def test_int8_copies_are_close_to_the_float_models(exported):
    tokens = np.array([len(s) + 1 for s in exported["sentences"]])
    rescored = _rescore(exported["paths"]["no-state.int8.onnx"], exported["sentences"])
    fused = [_fused(exported["paths"]["with-state.int8.onnx"], s) for s in exported["sentences"]]
    for got in (rescored, np.array(fused)):
        assert np.all(np.abs(got - exported["expected"]) <= INT8_ATOL * tokens), (got, exported["expected"])
    for name in ("no-state.onnx", "with-state.onnx"):
        int8 = onnx.load(exported["paths"][name.replace(".onnx", ".int8.onnx")])
        assert any(init.data_type == onnx.TensorProto.INT8 for init in int8.graph.initializer)
        float_meta = _meta(exported["paths"][name])
        assert float_meta.items() <= _meta(exported["paths"][name.replace(".onnx", ".int8.onnx")]).items()


def test_several_tokens_at_once_continue_as_single_steps(exported):
    """log_softmax after x's last token, and the states after it: sherpa-onnx's classic rescoring
    feeds a chunk of tokens in one call."""
    session, meta = _session(exported["paths"]["with-state.onnx"]), _meta(exported["paths"]["with-state.onnx"])
    sentence = [int(meta["sos_id"]), *exported["sentences"][0]]
    names = [i.name for i in session.get_inputs()]
    shape = (int(meta["num_layers"]), 2, int(meta["hidden_size"]))
    rng = np.random.default_rng(0)
    h0, c0 = (rng.standard_normal(shape).astype(np.float32) * 0.5 for _ in range(2))
    whole = session.run(None, dict(zip(names, (np.array([sentence] * 2, np.int64), h0, c0))))
    h, c = h0, c0
    for token in sentence:
        step = session.run(None, dict(zip(names, (np.array([[token]] * 2, np.int64), h, c))))
        h, c = step[1], step[2]
    for got, want in zip(whole, step):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_graph_signatures_and_metadata_are_icefalls(exported):
    config = exported["config"]
    no_state, with_state = (_session(exported["paths"][n]) for n in ("no-state.onnx", "with-state.onnx"))
    assert [(i.name, i.type) for i in no_state.get_inputs()] == [("x", "tensor(int64)"), ("x_lens", "tensor(int64)")]
    assert [(o.name, o.type) for o in no_state.get_outputs()] == [("nll", "tensor(float)")]
    assert [(i.name, i.type, i.shape) for i in with_state.get_inputs()] == [
        ("x", "tensor(int64)", ["N", "L"]), ("h0", "tensor(float)", [config.layers, "N", config.hidden]),
        ("c0", "tensor(float)", [config.layers, "N", config.hidden])]
    assert [o.name for o in with_state.get_outputs()] == ["log_softmax", "next_h0", "next_c0"]
    ids = exported["ids"]
    boundary = ("<s>", "</s>") if exported["layout"] == "kaldi" else ("<sos/eos>", "<sos/eos>")
    for name in FILES:
        meta = _meta(exported["paths"][name])
        assert meta["model_type"] == "rnnlm" and meta["version"] == "1"
        assert (int(meta["sos_id"]), int(meta["eos_id"])) == (ids[boundary[0]], ids[boundary[1]])
        assert int(meta["vocab_size"]) == max(ids.values()) + 1
        assert (meta["num_layers"], meta["hidden_size"], meta["embedding_dim"]) == (
            str(config.layers), str(config.hidden), str(config.emb))


def test_ids_the_model_has_no_entry_for_have_probability_zero(exported):
    session, meta = _session(exported["paths"]["with-state.onnx"]), _meta(exported["paths"]["with-state.onnx"])
    shape = (int(meta["num_layers"]), 1, int(meta["hidden_size"]))
    zeros = np.zeros(shape, np.float32)
    scores = session.run(None, {"x": np.array([[int(meta["sos_id"])]], np.int64), "h0": zeros, "c0": zeros})[0][0]
    ids = exported["ids"]
    never = {"icefall": [], "espnet": ["<blank>"], "kaldi": ["<eps>", "#0", "<s>"]}[exported["layout"]]
    never = [ids[symbol] for symbol in never] + ([9] if exported["layout"] == "kaldi" else [])
    words = [ids[w] for w in [*WORDS, "<unk>"]] + [int(meta["eos_id"])]
    assert np.all(np.isneginf(scores[never]))
    assert np.all(np.isfinite(scores[words]))
    if exported["layout"] == "espnet":  # every id is a word, <unk> or the end: a distribution
        assert math.isclose(np.exp(scores[words].astype(np.float64)).sum(), 1.0, abs_tol=1e-5)


def test_a_cell_without_c_passes_c0_through_unchanged(exported):
    if exported["config"].cell not in ("gru", "rnn"):
        pytest.skip("an LSTM's c is its own")
    session, meta = _session(exported["paths"]["with-state.onnx"]), _meta(exported["paths"]["with-state.onnx"])
    shape = (int(meta["num_layers"]), 3, int(meta["hidden_size"]))
    rng = np.random.default_rng(1)
    h0, c0 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    x = np.array([[3], [4], [5]], np.int64)
    _, next_h, next_c = session.run(None, {"x": x, "h0": h0, "c0": c0})
    np.testing.assert_array_equal(next_c, c0)
    assert not np.allclose(next_h, h0)
    assert "c0 passes through unchanged" in meta["comment"]


def _leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".onnx") or name.startswith(".rnnlm-tmp"))


@pytest.mark.parametrize("problem", ["attention", "learned vocabulary", "no boundary symbol", "right to left"])
def test_models_sherpa_onnx_cannot_use_are_refused_with_one_line(tmp_path, problem):
    table = {"no boundary symbol": "<blk> 0\n<unk> 1\n\u2581the 2\n"}.get(problem, TABLES["icefall"])
    (tmp_path / "tokens.txt").write_text(table, encoding="utf-8")
    tokenizer = tokenizer_from_table(str(tmp_path / "tokens.txt"))
    data = tokenizer.to_dict()
    if problem == "learned vocabulary":
        data = {key: value for key, value in data.items() if key != "symbols"}
    if problem == "right to left":
        data = {**data, "reverse": True}
    config = ModelConfig(vocab_size=tokenizer.vocab_size, emb=4, hidden=4, layers=1, dropout=0.0,
                         attention=3 if problem == "attention" else 0)
    save_checkpoint(tmp_path / "lm.pt", build_model(config), data)
    result = cli("export", tmp_path / "lm.pt", "--format", "sherpa-onnx")
    assert result.exit_code == 2, result.stdout
    line = one_error_line(result.stderr)
    assert {"attention": "--attention", "learned vocabulary": "tokenize --symbols",
            "no boundary symbol": "<sos/eos>", "right to left": "--reverse"}[problem] in line
    assert result.stdout == "" and _leftovers(tmp_path) == []


def test_an_export_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    import onnxruntime.quantization as quantization

    (tmp_path / "tokens.txt").write_text(TABLES["icefall"], encoding="utf-8")
    tokenizer = tokenizer_from_table(str(tmp_path / "tokens.txt"))
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, emb=4, hidden=4, layers=1, dropout=0.0))
    calls = []
    real = quantization.quantize_dynamic

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("quantiser failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(quantization, "quantize_dynamic", second_fails)
    with pytest.raises(RuntimeError, match="quantiser failed"):
        export_sherpa_onnx(model.eval(), tokenizer, str(tmp_path / "lm"))
    assert len(calls) == 2 and _leftovers(tmp_path) == []


def test_boundary_symbols_are_the_models_end_of_line(tmp_path):
    (tmp_path / "tokens.txt").write_text(TABLES["icefall"], encoding="utf-8")
    tokenizer = tokenizer_from_table(str(tmp_path / "tokens.txt"))
    tokens = token_map(tokenizer)
    sos = _table_ids(TABLES["icefall"])["<sos/eos>"]
    assert (tokens.sos_id, tokens.eos_id) == (sos, sos)
    assert tokens.inputs[sos] == tokens.columns[sos] == tokenizer.eos_id
    assert tokenizer.pieces.index("<sos/eos>") != tokenizer.eos_id  # a word to rnnlm, never read as one here


# --- sherpa-onnx itself -----------------------------------------------------------------

FAKE_TRANSDUCER = textwrap.dedent('''
    """A streaming LSTM transducer of sherpa-onnx's layout whose joiner always emits CHAIN."""
    import sys
    import numpy as np, onnx, torch

    folder, chain, size = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])

    class Encoder(torch.nn.Module):
        def forward(self, x, h, c):  # (N, T, 80) -> (N, T/2, V): frames that say nothing
            return x[:, ::2, :1].expand(-1, -1, size) * 0.0, h + 0.0, c + 0.0

    class Decoder(torch.nn.Module):
        def forward(self, y):  # (N, context) -> (N, V), the last token one-hot (-1 is no token yet)
            return torch.nn.functional.one_hot(y[:, -1].clamp(min=0), size).float()

    class Joiner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            links = torch.zeros(size, size)
            for before, after in zip([0, *chain], [*chain, 0]):
                links[before, after] = 500.0  # beyond what any LM score can change
            self.register_buffer("links", links)

        def forward(self, encoder_out, decoder_out):
            return encoder_out + decoder_out @ self.links

    def save(module, args, name, inputs, outputs, meta):
        path = f"{folder}/{name}.onnx"
        axes = {n: {0: "N"} for n in inputs + outputs}
        axes.update({n: {1: "N"} for n in ("h", "c", "next_h", "next_c") if n in axes})
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=13, dynamo=False)
        graph = onnx.load(path)
        onnx.helper.set_model_props(graph, meta)
        onnx.save(graph, path)

    state = torch.zeros(1, 1, 4)
    save(Encoder(), (torch.zeros(1, 8, 80), state, state), "encoder", ["x", "h", "c"],
         ["encoder_out", "next_h", "next_c"], {"model_type": "lstm", "num_encoder_layers": "1", "T": "8",
         "decode_chunk_len": "8", "rnn_hidden_size": "4", "d_model": "4"})
    save(Decoder(), (torch.zeros(1, 2, dtype=torch.long),), "decoder", ["y"], ["decoder_out"],
         {"vocab_size": str(size), "context_size": "2"})
    save(Joiner(), (torch.zeros(1, size), torch.zeros(1, size)), "joiner", ["encoder_out", "decoder_out"], ["logit"], {})
''')

RECOGNISE = textwrap.dedent('''
    import sys
    import numpy as np, sherpa_onnx

    folder, tokens, lm = sys.argv[1:4]
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=tokens, encoder=f"{folder}/encoder.onnx", decoder=f"{folder}/decoder.onnx",
        joiner=f"{folder}/joiner.onnx", num_threads=1, decoding_method="modified_beam_search", lm=lm, lm_scale=1.0)
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, np.zeros(16000, dtype=np.float32))
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    result = recognizer.get_result_all(stream)
    print(len(result.tokens), " ".join(f"{p!r}" for p in result.lm_probs))
''')


def test_sherpa_onnx_fuses_the_exported_lm_as_eval_scores_each_token(exported, tmp_path):
    """sherpa-onnx's own recogniser, with a stand-in transducer that always emits one token
    sequence, adds up the exported LM's log-probabilities token by token (shallow fusion, the
    default): each must be eval's score of that token."""
    import importlib.util

    if importlib.util.find_spec("sherpa_onnx") is None:
        pytest.skip("sherpa-onnx is not installed (pip install sherpa-onnx)")
    if exported["layout"] != "icefall":
        pytest.skip("sherpa-onnx reads a tokens.txt of 'symbol id' lines")
    ids, sentence = exported["ids"], SENTENCES[0].split()
    chain = ",".join(str(ids[word]) for word in sentence)
    size = max(ids.values()) + 1
    env = console_env()
    built = subprocess.run([sys.executable, "-c", FAKE_TRANSDUCER, str(tmp_path), chain, str(size)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    ran = subprocess.run([sys.executable, "-c", RECOGNISE, str(tmp_path), str(exported["folder"] / "tokens.txt"),
                          exported["paths"]["with-state.onnx"]], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    emitted, *got = ran.stdout.split()
    assert int(emitted) == len(sentence), ran.stdout
    got = [float(p) for p in got]
    (tmp_path / "line.txt").write_text(SENTENCES[0] + "\n", encoding="utf-8")
    query = cli("eval", exported["folder"] / "lm.pt", tmp_path / "line.txt", "--query", "--unk")
    assert query.exit_code == 0, query.stderr
    fields = query.stdout.split("\t")[: len(sentence)]
    assert [f.rsplit("=", 1)[0] for f in fields] == sentence
    want = [float(f.rsplit("=", 1)[1]) * math.log(10) for f in fields]
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
