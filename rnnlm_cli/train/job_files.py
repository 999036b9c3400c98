"""The files a training job reads and writes, checked against each other before any work.

See :mod:`rnnlm_cli.files.roles` for why; this module knows which files a ``train`` run
touches: its inputs, ``--out`` and the files written beside it, and the promotion target.
"""

from __future__ import annotations

import os

from rnnlm_cli.errors import UsageError
from rnnlm_cli.files.locks import check_lock_usable, target_lock_path
from rnnlm_cli.files.roles import FileRole, check_file_roles, check_one_stdin, check_output_file, check_stdout_apart
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.outputs import OutputPaths
from rnnlm_cli.train.promote import resolve_target
from rnnlm_cli.train.resume import AUTO
from rnnlm_cli.store.tokenizer_sources import tokenizer_to_learn
from rnnlm_cli.text.tokenfile import is_token_file


def check_job_files(job: TrainJob) -> None:
    """Refuse, before any work, outputs that cannot be written and two roles naming one file.

    ``--init-from X --promote-if-better X`` is the cron recipe and may share a file (X is
    read at the start and replaced, under its lock, only at the end); so may ``--resume``
    and the ``.last.pt`` it continues.
    """
    paths = OutputPaths.beside(job.out)
    check_output_file(job.out, "--out")
    outputs = [FileRole("--out", job.out, writes=True),
               FileRole("the state file", paths.last, writes=True),
               FileRole("the metrics file", paths.metrics, writes=True)]
    stem, _ = os.path.splitext(job.out)
    if not is_token_file(job.corpus):  # a pipe is not sniffed: what comes through it lands in .train.tok
        outputs.append(FileRole("the token file", f"{stem}.train.tok", writes=True))
    if job.valid is not None and not is_token_file(job.valid):
        outputs.append(FileRole("the validation token file", f"{stem}.valid.tok", writes=True))
    for role in outputs[1:]:
        check_output_file(role.path, role.name)
    inputs = _input_roles(job)
    if job.promote_to is not None:
        check_output_file(job.promote_to, "--promote-if-better")
        # Its lock is taken after training: one that can never be taken is said now.
        check_lock_usable(target_lock_path(resolve_target(job.promote_to)), f"the promotion target {job.promote_to}")
        inputs.append(FileRole("--promote-if-better", job.promote_to, writes=True))
    for role in inputs:
        if job.train.keep_checkpoints and role.path and _is_snapshot_name(role.path, paths):
            raise UsageError(f"{role.name} {role.path} is one of this run's snapshots, which --keep-checkpoints "
                             "rotates away; copy it elsewhere first")
    check_file_roles(inputs + outputs, may_share=[("--init-from", "--promote-if-better"),
                                                  ("--resume", "the state file")])


def check_stdin_read_once(job: TrainJob, config_path: str | None) -> None:
    """UsageError when two of the job's inputs are ``-``, ``--config`` included: a ``valid: -``
    in a config file read from stdin would find stdin empty."""
    check_one_stdin(_input_roles(job) + [FileRole("--config", config_path or "")])


def check_printing_apart(job: TrainJob, config_path: str | None) -> None:
    """UsageError when stdout is redirected into a file the job names (``--show-config
    --init-from m.pt >> m.pt`` would append YAML to the model)."""
    check_stdout_apart(_input_roles(job) + [FileRole("--out", job.out), FileRole("--promote-if-better", job.promote_to or ""),
                                            FileRole("--config", config_path or "")])


def _input_roles(job: TrainJob) -> list[FileRole]:
    """The files the job reads, by the option naming each ("" where none is named)."""
    roles = [FileRole("CORPUS", job.corpus), FileRole("--valid", job.valid or ""),
             FileRole("--init-from", job.init_from or ""),
             FileRole("--tokenizer", job.tokenizer if job.tokenizer and not tokenizer_to_learn(job.tokenizer) else ""),
             FileRole("--embeddings", job.train.embeddings), FileRole("--synonyms", job.train.synonyms)]
    if job.resume not in (None, AUTO):
        roles.append(FileRole("--resume", job.resume))
    return roles


def _is_snapshot_name(path: str, paths: OutputPaths) -> bool:
    real, prefix = os.path.realpath(path), os.path.realpath(paths.snapshot_prefix)
    return real.startswith(prefix) and real[len(prefix):-len(".pt")].isdigit() and real.endswith(".pt")
