"""nightlake: ingest an observatory night into a Rucio data lake, and prove it got there."""

__version__ = "0.1.0"
