import pytest
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models.lm import build_model, parameter_count
from rnnlm_cli.models.registry import CELLS, IMPLS
from rnnlm_cli.models.sizing import check_fits_in_memory, estimated_parameters, tensor_count, training_bytes


@pytest.mark.parametrize("shape", [
    dict(cell="lstm", emb=8, hidden=12, layers=2, tied=True),
    dict(cell="lstm", emb=8, hidden=8, layers=1, tied=True),
    dict(cell="gru", emb=8, hidden=16, layers=3),
    dict(cell="rnn", emb=5, hidden=7, layers=2),
    dict(cell="lstm", emb=8, hidden=64, layers=1, adaptive_softmax="4,10,20"),
    dict(cell="lstm", emb=8, hidden=64, layers=1, adaptive_softmax="4,10,20", adaptive_div=4.0),
    dict(cell="gru", emb=8, hidden=6, layers=1, adaptive_softmax="4,10,20,30"),  # the div lowered
])
def test_estimated_parameters_match_the_built_model(shape):
    config = ModelConfig(vocab_size=37, **shape)
    model = build_model(config)
    unique = {id(p): p.numel() for p in model.parameters()}  # a tied weight once
    assert estimated_parameters(config) == sum(unique.values())


def test_estimates_by_hand_for_an_lstm_and_a_mogrifier():
    # LSTM, V=10 E=3 H=4 L=2 untied: embedding 30, layer 0 4*4*(3+4+2)=144, layer 1 4*4*(4+4+2)=160,
    # decoder 4*10+10=50.
    assert estimated_parameters(ModelConfig(vocab_size=10, cell="lstm", emb=3, hidden=4, layers=2)) == 384
    # Mogrifier with 3 rounds adds per layer Q (2, in, H) and R (1, H, in): 3*in*H, i.e. 36 and 48.
    config = ModelConfig(vocab_size=10, cell="mogrifier", emb=3, hidden=4, layers=2, mogrifier_rounds=3)
    assert estimated_parameters(config) == 384 + 36 + 48
    assert tensor_count(config) == 1 + 2 * (4 + 2) + 2


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("shape", [
    dict(emb=5, hidden=7, layers=3),
    dict(emb=6, hidden=6, layers=1, tied=True, mogrifier_rounds=1),
    dict(emb=4, hidden=9, layers=2, attention=3, mogrifier_rounds=2, adaptive_softmax="8,20"),
])
def test_every_registered_cell_is_sized_as_built(cell, impl, shape):
    config = ModelConfig(vocab_size=31, cell=cell, impl=impl, **shape)
    model = build_model(config)
    assert estimated_parameters(config) == parameter_count(model)
    assert tensor_count(config) == len(model.state_dict())
    # Each layer's parameters are the registry's shapes, in its order.
    spec = CELLS[cell]
    for layer in range(config.layers):
        width = config.emb if layer == 0 else config.hidden
        shapes = [tuple(p.shape) for name, p in model.rnn.named_parameters() if name.endswith(f"_l{layer}")]
        assert shapes == [tuple(s) for s in spec.layer_parameters(width, config.hidden, **config.cell_options)]
        assert tuple(getattr(model.rnn, f"weight_ih_l{layer}").shape) == (spec.gates * config.hidden, width)


def test_training_memory_counts_the_cells_gates():
    train = TrainConfig(batch_size=2, bptt=3)

    def recurrent_bytes(cell):
        config = ModelConfig(vocab_size=10, cell=cell, emb=3, hidden=4, layers=2)
        return training_bytes(config, train) - 16 * estimated_parameters(config) - 3 * 6 * 10 * 4

    # tokens * layers * hidden * (gates + 2) float32 values: 6*2*4*(g+2)*4 bytes.
    assert [recurrent_bytes(c) for c in ("lstm", "gru", "rnn")] == [192 * 6, 192 * 5, 192 * 3]
    assert recurrent_bytes("mogrifier") == recurrent_bytes("lstm")


def test_absurd_sizes_are_refused_and_sane_ones_pass():
    huge = ModelConfig(vocab_size=1000, hidden=60000, layers=3)
    with pytest.raises(UsageError, match="GiB"):
        check_fits_in_memory(huge, TrainConfig(), torch.device("cpu"))
    check_fits_in_memory(ModelConfig(vocab_size=1000), TrainConfig(), torch.device("cpu"))
