"""Exceptions that cross module boundaries.

`BadInput` is the one the command line turns into exit code 2 with a single clear line:
anything the user can fix (a spec field out of range, a busy port, a missing system package).
"""


class BadInput(Exception):
    """The user's input or environment is wrong; nothing was changed. Exit code 2."""
