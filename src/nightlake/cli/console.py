"""The two consoles every command prints through, so that output reads the same everywhere.

Results go to stdout, progress and messages to stderr. Soft wrapping keeps a long line (a path,
a DID, an `eval` command to copy) whole when the output is a log file or a narrow terminal, and
highlighting is off so that Rucio's messages are printed as they are.
"""

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
