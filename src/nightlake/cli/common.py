"""What several commands share, so that they read and behave the same everywhere: options, the
--rule syntax, and how a run command ends (exit codes, auth failures, metrics)."""

from collections.abc import Callable

import click

from nightlake.observe import metrics
from nightlake import BadInput
from nightlake.observe.events import EventBus
from nightlake.catalog.retry import GaveUp
from nightlake.catalog.rules import RulePolicy

metrics_port = click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT while the command runs.")


OPTIONS = {"copies": int, "lifetime": int, "activity": str, "source": str}


def parse_policy(text: str) -> RulePolicy:
    """`EXPR[,copies=N][,lifetime=S][,activity=A][,source=EXPR]` (RSE expressions have no commas);
    `source` is Rucio's source_replica_expression. Ranges are the night spec's (`spec.Rule`)."""
    from pydantic import ValidationError

    from nightlake.night.spec import Rule

    expression, *options = [part.strip() for part in text.split(",")]
    fields: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in OPTIONS or not value or key in fields:
            raise BadInput(f"--rule {text!r}: bad option {option!r} "
                           "(copies=, lifetime=, activity=, source=, each at most once)")
        try:
            fields[key] = OPTIONS[key](value)
        except ValueError:
            raise BadInput(f"--rule {text!r}: {key} must be an integer, got {value!r}") from None
    source = fields.pop("source", None)
    try:
        rule = Rule.model_validate({"rse_expression": expression, **fields})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise BadInput(f"--rule {text!r}: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    return RulePolicy(rule.rse_expression, rule.copies, rule.lifetime, rule.activity, source)


def stopped_message(exc: GaveUp) -> str:
    """The one line for a command that a service stopped: which service, where, and what to do."""
    from nightlake.catalog.client import rucio_host

    where = f" ({rucio_host()})" if exc.target == "catalog" else ""
    return (f"{exc.target}{where}: {exc.classified.error_class.value} after {exc.attempts} attempt(s): "
            f"{exc.classified.message} Re-run the same command to resume.")


def finish_run(run: Callable[[EventBus], dict], metrics_port: int | None,
               print_summary: Callable[[dict], None]) -> None:
    """Run a journaled command: metrics while it runs, the summary printed, exit 1 unless every
    file is done. A refused credential or a service that stayed down ends it in `main`."""
    bus = EventBus()
    with metrics.serving(metrics_port, bus):
        summary = run(bus)
    print_summary(summary)
    if not summary["complete"]:
        raise click.exceptions.Exit(1)
