"""The two consoles every command prints through, so that output reads the same everywhere.

Results go to stdout, progress and messages to stderr. Soft wrapping keeps a long line (a path,
a DID, an `eval` command to copy) whole when the output is a log file or a narrow terminal, and
highlighting is off so that Rucio's messages are printed as they are. Output that is not a
terminal (a pipe, a log file, a cron job's mail) is given a wide page, unless `COLUMNS` says
otherwise: rich would assume 80 columns and cut a table's cells short with an ellipsis.
"""

import os
import sys

from rich.console import Console

WIDE = 200


def _width(stream) -> int | None:
    """None (rich asks the terminal, or `COLUMNS`) for a terminal; WIDE for anything else."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return WIDE


out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))
