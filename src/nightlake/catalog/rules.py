"""The rule calls of the `Catalog` (Rucio's RuleClient): rules added once, looked up, followed.

A rule is added idempotently: Rucio is asked first whether this account already holds an identical
rule (same DID, RSE expression, copies: Rucio's own uniqueness key), and a `DuplicateRule` from a
race is answered by looking again. Rules are per dataset, so these calls count hundreds per
night, never one per file; the account's rules are followed all at once (`account_rules`), and the
transfer requests behind them per pair of RSEs (`transfer_requests`, `request_history`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.retry import GaveUp

Did = tuple[str, str]
INVALID_RULE = (rucio_exc.InvalidRSEExpression, rucio_exc.InputValidationError, rucio_exc.InvalidObject)
RUCIO_DATE = "%a, %d %b %Y %H:%M:%S UTC"  # how Rucio's filters take a date (rucio.common.utils.DATE_FORMAT)
REQUEST_PAGE = 1000


@dataclass(frozen=True)
class RulePolicy:
    """One `--rule`: what every dataset of a run should get. `lifetime` in seconds (None: for
    ever); `source_replica_expression`: the RSEs transfers may read from."""

    rse_expression: str
    copies: int = 1
    lifetime: int | None = None
    activity: str | None = None
    source_replica_expression: str | None = None


class RuleCalls:
    def ensure_rule(self, dataset: Did, policy: RulePolicy) -> tuple[str, bool]:
        """(rule id, whether it already existed): an identical rule of this account is reused."""
        if rule_id := self.existing_rule(dataset, policy):
            return rule_id, True
        scope, name = dataset
        try:
            ids = self.call(self.client.add_replication_rule, [{"scope": scope, "name": name}],
                            policy.copies, policy.rse_expression, lifetime=policy.lifetime,
                            activity=policy.activity, source_replica_expression=policy.source_replica_expression)
            return ids[0], False
        except GaveUp as failure:
            if isinstance(failure.original, rucio_exc.DuplicateRule):
                if rule_id := self.existing_rule(dataset, policy):
                    return rule_id, True
            if isinstance(failure.original, INVALID_RULE):
                raise BadInput(f"rule {policy.rse_expression!r} on {scope}:{name}: "
                               f"{failure.classified.message.splitlines()[-1]}") from None
            raise

    def existing_rule(self, dataset: Did, policy: RulePolicy) -> str | None:
        scope, name = dataset
        for rule in self.call(lambda: list(self.client.list_did_rules(scope, name))):
            if (rule["rse_expression"], rule["copies"], rule["account"]) == \
                    (policy.rse_expression, policy.copies, self.client.account):
                return rule["id"]
        return None

    def rule(self, rule_id: str) -> dict[str, Any] | None:
        """The rule as `get_replication_rule` gives it (state, lock counts, last error), or None
        when Rucio no longer has it (deleted, or expired and cleaned)."""
        try:
            return self.call(self.client.get_replication_rule, rule_id)
        except GaveUp as failure:
            if isinstance(failure.original, rucio_exc.RuleNotFound):
                return None
            raise

    def examine_rule(self, rule_id: str) -> dict[str, Any]:
        """Rucio's analysis of a stuck rule: per stuck lock, its attempts, sources, last request state."""
        return self.call(self.client.examine_replication_rule, rule_id)

    def account_rules(self, created_after: datetime) -> dict[str, dict[str, Any]]:
        """Every rule of this account created since `created_after`, by id, in one streamed
        `list_replication_rules` call: a whole night's rules for the price of one, where
        `get_replication_rule` costs a call per rule."""
        filters = {"account": self.client.account, "created_after": created_after.strftime(RUCIO_DATE)}
        return {r["id"]: r for r in self.call(lambda: list(self.client.list_replication_rules(filters)))}

    def transfer_requests(self, source: str, destination: str, states: str) -> list[dict[str, Any]]:
        """The live transfer requests from one RSE to another in `states` (Rucio's one-letter
        RequestState values, comma-separated), in one streamed `list_requests` call."""
        return self.call(lambda: list(self.client.list_requests(source, destination, states)))

    def request_history(self, source: str, destination: str, states: str,
                        page: int = REQUEST_PAGE) -> Iterator[dict[str, Any]]:
        """The archived transfer requests from one RSE to another in `states`, page by page
        (`list_requests_history`, root or admin only): where Rucio keeps each failed attempt's
        own message once the finisher has moved it out of the live table."""
        offset = 0
        while True:
            rows = self.call(lambda o=offset: list(self.client.list_requests_history(
                source, destination, states, offset=o, limit=page)))
            yield from rows
            if len(rows) < page:
                return
            offset += page

    def rse_names(self, expression: str | None = None) -> list[str]:
        """The RSEs an expression resolves to (every RSE without one): where a rule's transfers
        go, and where they may come from."""
        return sorted(r["rse"] for r in self.call(lambda: list(self.client.list_rses(expression))))

    def boost_rule(self, rule_id: str) -> None:
        """Ask the judge-repairer to retry a STUCK rule's locks now (Rucio's `boost_rule`): it
        otherwise retries a failed lock only hours after its last attempt (every 2 h on day one)."""
        self.call(self.client.update_replication_rule, rule_id, {"boost_rule": True})
