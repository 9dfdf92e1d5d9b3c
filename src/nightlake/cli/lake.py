"""`nightlake lake …`: the local data lake (placeholder while the lake lands)."""

import click


@click.group()
def lake() -> None:
    """The local data lake: Rucio + PostgreSQL + XRootD RSEs on 127.0.0.1."""
