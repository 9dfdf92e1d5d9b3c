"""The rule calls of the `Catalog` (Rucio's RuleClient): rules added once, looked up, followed.

A rule is added idempotently: Rucio is asked first whether this account already holds an identical
rule (same DID, RSE expression, copies: Rucio's own uniqueness key), and a `DuplicateRule` from a
race is answered by looking again. Rules are per dataset, so these calls count hundreds per
night, never one per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.retry import GaveUp

Did = tuple[str, str]
INVALID_RULE = (rucio_exc.InvalidRSEExpression, rucio_exc.InputValidationError, rucio_exc.InvalidObject)


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
