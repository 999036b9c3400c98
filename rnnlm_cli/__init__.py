"""rnnlm: train, score, sample and export recurrent neural language models."""

__version__ = "0.1.0"
