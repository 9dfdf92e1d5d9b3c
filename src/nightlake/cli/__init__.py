"""The `nightlake` command line: a thin edge that parses flags and calls into the library.

Every command lives in a module of its own here (a group's commands in the group's module);
errors the user can fix (`BadInput`) become one line on stderr and exit code 2, as the product
notes promise.
"""

import importlib
import sys

import click
from rich.markup import escape

from nightlake import BadInput, __version__
from nightlake.catalog.retry import AuthFailure, GaveUp
from nightlake.cli.common import stopped_message
from nightlake.cli.console import err

COMMANDS = {"lake": "lake:lake", "plan": "plan:plan_cmd", "generate": "generate:generate_cmd",
            "ingest": "ingest:ingest_cmd", "status": "status:status_cmd", "rules": "rules:rules",
            "retrieve": "retrieve:retrieve_cmd", "report": "report:report_cmd",
            "campaign": "campaign:campaign_cmd", "daemon": "daemon:daemon_cmd"}
"""command → `module:attribute` under nightlake.cli."""


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or `--help` lists them all): a
    `nightlake retrieve` then starts without numpy and cryptography, which only plan, generate
    and lake need (0.2 s of a 0.45 s start)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"nightlake.cli.{module}"), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightlake")
def cli() -> None:
    """Ingest an observatory night into a Rucio data lake, and prove it got there."""


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
