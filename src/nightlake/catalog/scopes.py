"""The scope calls of the `Catalog` (Rucio's ScopeClient): a run's scopes are checked before
anything is written. Rucio refuses a DID in a scope that does not exist only when it is
registered, after its bytes are uploaded: every file of the night would fail PERMANENT and "re-run
to resume" would never help. Creating a scope is an administrator's job, so the line says how."""

from __future__ import annotations

from collections.abc import Iterable

from nightlake import BadInput


class ScopeCalls:
    def check_scopes(self, scopes: Iterable[str | None]) -> None:
        """Every scope must exist on the server; BadInput names the first that does not, and the
        command that creates it for this account."""
        missing = sorted(set(filter(None, scopes)) - set(self.call(self.client.list_scopes)))
        if missing:
            scope, account = missing[0], self.client.account
            raise BadInput(f"scope {scope!r} does not exist on the Rucio server; an administrator creates it "
                           f"with `rucio scope add {scope} --account {account}` (older clients: "
                           f"`rucio-admin scope add --scope {scope} --account {account}`)")
