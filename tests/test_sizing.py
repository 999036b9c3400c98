import pytest
import torch

from rnnlm_cli.config import ModelConfig, TrainConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models import build_model
from rnnlm_cli.sizing import check_fits_in_memory, parameter_count


@pytest.mark.parametrize("shape", [
    dict(cell="lstm", emb=8, hidden=12, layers=2, tied=True),
    dict(cell="lstm", emb=8, hidden=8, layers=1, tied=True),
    dict(cell="gru", emb=8, hidden=16, layers=3),
    dict(cell="rnn", emb=5, hidden=7, layers=2),
])
def test_parameter_count_matches_the_built_model(shape):
    config = ModelConfig(vocab_size=37, **shape)
    model = build_model(config)
    unique = {id(p): p.numel() for p in model.parameters()}  # a tied weight once
    assert parameter_count(config) == sum(unique.values())


def test_absurd_sizes_are_refused_and_sane_ones_pass():
    huge = ModelConfig(vocab_size=1000, hidden=60000, layers=3)
    with pytest.raises(UsageError, match="GiB"):
        check_fits_in_memory(huge, TrainConfig(), torch.device("cpu"))
    check_fits_in_memory(ModelConfig(vocab_size=1000), TrainConfig(), torch.device("cpu"))
