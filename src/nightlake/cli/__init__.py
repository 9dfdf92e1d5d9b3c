"""The `nightlake` command line: a thin edge that parses flags and calls into the library.

Every command lives in a module of its own here (a group's commands in the group's module);
errors the user can fix (`BadInput`) become one line on stderr and exit code 2, as the product
notes promise.
"""

import sys

import click
from rich.markup import escape

from nightlake import BadInput, __version__
from nightlake.catalog.retry import AuthFailure, GaveUp
from nightlake.cli.common import stopped_message
from nightlake.cli.console import err
from nightlake.cli.generate import generate_cmd
from nightlake.cli.ingest import ingest_cmd
from nightlake.cli.lake import lake as lake_group
from nightlake.cli.plan import plan_cmd
from nightlake.cli.report import report_cmd
from nightlake.cli.retrieve import retrieve_cmd
from nightlake.cli.rules import rules as rules_group
from nightlake.cli.status import status_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightlake")
def cli() -> None:
    """Ingest an observatory night into a Rucio data lake, and prove it got there."""


for command in (lake_group, plan_cmd, generate_cmd, ingest_cmd, status_cmd, rules_group, retrieve_cmd, report_cmd):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point: one line on stderr and no traceback for what a user can act on.
    Bad input and refused credentials exit 2; a service that stayed down through every retry
    exits 1, like a run with failed files, because re-running resumes."""
    try:
        code = cli.main(standalone_mode=False)  # returns ctx.exit()'s code instead of exiting
    except BadInput as exc:
        _one_line("error", str(exc))
        sys.exit(2)
    except AuthFailure as exc:
        _one_line("error", f"authentication refused, stopping: {exc.classified.message}")
        sys.exit(2)
    except GaveUp as exc:
        _one_line("stopped", stopped_message(exc))
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("nightlake: aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(kind: str, message: str) -> None:
    line = " ".join(message.split())  # one line, even when Rucio's message has several
    err.print(f"[bold red]nightlake: {kind}:[/] {escape(line)}")
