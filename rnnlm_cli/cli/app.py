"""The ``rnnlm`` command: wires the subcommands and turns every error into one line.

Exit codes (also in the README): 0 ok, 1 failure, 2 usage, 3 not promoted,
65 bad data, 66 missing input, 73 cannot write, 75 locked (try later),
128 + signal when a signal stopped a command (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from rnnlm_cli import __version__
from rnnlm_cli.cli import analyze as analyze_command
from rnnlm_cli.cli import compare as compare_command
from rnnlm_cli.cli import eval as eval_command
from rnnlm_cli.cli import export as export_command
from rnnlm_cli.cli import generate as generate_command
from rnnlm_cli.cli import tokenize as tokenize_command
from rnnlm_cli.cli import train as train_command
from rnnlm_cli.cli.ui import guarded_streams, launched_rank, print_text, silence_stdout
from rnnlm_cli.errors import RnnlmError, TrainingInterrupted
from rnnlm_cli.cli.terminate import Terminated, raise_on_termination
from rnnlm_cli.cli.options import conventional_metavars, switch

EXIT_INTERRUPTED = 130


def _fail(message: str, code: int, label: str = "error: ") -> None:
    rank = launched_rank()
    prefix = "rnnlm" if rank == 0 else f"rnnlm[rank {rank}]"  # under torchrun
    sys.stderr.write(f"{prefix}: {label}{message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _quiet_broken_pipe() -> None:
    # The reader went away (`rnnlm generate ... | head -1`): stop quietly, and point
    # stdout at /dev/null so the interpreter's final flush does not complain.
    silence_stdout()
    sys.exit(0)


COMMANDS = (tokenize_command, train_command, eval_command, generate_command, export_command, compare_command)
"""The subcommand modules, each one command (``analyze`` is a group of its own)."""


def _leaves(command):
    """The command, or each command of a group (``analyze gradients``)."""
    if command is None:
        return []
    if hasattr(command, "commands"):
        return [leaf for sub in command.commands.values() for leaf in _leaves(sub)]
    return [command]


class RnnlmGroup(TyperGroup):
    """The one error handler: typed errors and usage errors become one line and an exit code."""

    def invoke(self, ctx):
        # Typer's own entry point turns a broken pipe into exit 1 before main() sees it.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except KeyboardInterrupt:
            # Typer's entry point would turn this into a silent exit 130.
            _fail("interrupted", EXIT_INTERRUPTED)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None and name == train_command.NAME:
            train_command.refresh_cell_option(command)  # cells registered since import are listed too
        for leaf in _leaves(command):
            conventional_metavars(leaf)
            help_option = leaf.get_help_option(ctx)
            if help_option is not None:
                help_option.metavar = ""  # a switch: no <bool>
        return command

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        with guarded_streams(), raise_on_termination():
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)

    def _main(self, args, prog_name, complete_var, standalone_mode, **extra):
        try:
            result = super().main(args=args, prog_name=prog_name or "rnnlm", complete_var=complete_var,
                                  standalone_mode=False, **extra)
            sys.stdout.flush()  # here, not at exit, so that results lost to a full disk are exit 73
        except Terminated as exc:
            _fail(f"{exc}; outputs not yet complete were removed, nothing half-written is left",
                  exc.exit_code)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except typer.Abort:
            _fail("interrupted", EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except TrainingInterrupted as exc:
            if launched_rank() != 0:
                sys.exit(exc.exit_code)  # rank 0 reports the stop for the whole run
            _fail(str(exc), exc.exit_code, label="")
        except RnnlmError as exc:
            if os.environ.get("RNNLM_DEBUG") == "1":
                traceback.print_exc()
            _fail(str(exc), exc.exit_code)
        except Exception as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(exc.exit_code)  # the help is already printed; there is no error to add
            # Usage errors of the argument parser carry their own exit code and message.
            if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
                hint = ""
                command = getattr(getattr(exc, "ctx", None), "command_path", None)
                if command:
                    hint = f" (see '{command} --help')"
                _fail(exc.format_message() + hint, exc.exit_code)
            if os.environ.get("RNNLM_DEBUG") == "1":
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set RNNLM_DEBUG=1 for the traceback)", 1)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


app = typer.Typer(
    cls=RnnlmGroup,
    name="rnnlm",
    help="Train, score, sample and export recurrent neural language models (LSTM, GRU, RNN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print_text(f"rnnlm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = switch(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Train, score, sample and export recurrent neural language models (LSTM, GRU, RNN)."""


for module in COMMANDS:
    app.command(name=module.NAME, help=module.HELP, short_help=module.SUMMARY,
                epilog=module.EPILOG,
                context_settings={"help_option_names": ["-h", "--help"]})(module.command)
app.add_typer(analyze_command.app, name=analyze_command.NAME, help=analyze_command.HELP, epilog=analyze_command.EPILOG,
              short_help=analyze_command.SUMMARY)


def main() -> None:
    app()
