"""nightlake: ingest an observatory night into a Rucio data lake, and prove it got there.

`BadInput` lives here because every layer raises it, from the spec to the lake: it is anything the
user can fix (a spec field out of range, a busy port, a missing system package), nothing was changed,
and the command line turns it into one line on stderr and exit code 2.
"""

__version__ = "0.1.0"


class BadInput(Exception):
    """The user's input or environment is wrong; nothing was changed. Exit code 2."""
