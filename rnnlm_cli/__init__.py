"""rnnlm: train, score, sample and export recurrent neural language models.

The packages form layers; a module imports only from its own package and the layers below
(``tests/test_layers.py`` holds the package to it):

    cli/                 the ``rnnlm`` app, one module per subcommand; the only user of typer and rich
    train/   score/      training runs | scoring text with a trained model (never each other)
    store/               the checkpoint format, checks on everything loaded, exports
    text/    models/     text -> token ids -> batches | the cell registry, cells, the LM (never each other)
    files/ and the top   config, errors, device, option_files, units, presets; atomic writes, locks
"""

__version__ = "0.1.0"
