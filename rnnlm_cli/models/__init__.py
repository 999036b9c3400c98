"""Recurrent language models: the cell registry, cells written two ways, the LM, sizing, sampling.

Import from the module that defines a name (``rnnlm_cli.models.lm.build_model``); this
package re-exports nothing, so importing ``rnnlm_cli.models.registry`` or ``.config`` (which
the command line reads for ``--help``) does not import torch.
"""
