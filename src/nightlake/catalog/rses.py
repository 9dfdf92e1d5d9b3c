"""The RSE calls of the `Catalog` (Rucio's RSEClient): an RSE's protocols, RSE expressions
checked before anything is touched, so a typo in a rule changes nothing (exit 2), and the distances
the conveyor needs to find a path."""

from __future__ import annotations

from collections.abc import Iterable

from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.retry import GaveUp


class RseCalls:
    def rse_info(self, rse: str) -> dict:
        """The RSE's description as Rucio's rsemanager uses it (protocols, lfn2pfn algorithm, ...)."""
        from rucio.rse import rsemanager

        try:
            return self.call(rsemanager.get_rse_info, rse)
        except GaveUp as failure:
            if isinstance(failure.original, rucio_exc.RSENotFound):
                raise BadInput(f"RSE {rse!r} is not known to the Rucio server") from None
            raise

    def rses_matching(self, expression: str) -> set[str]:
        """The names of the RSEs an expression resolves to (one `list_rses`)."""
        return {r["rse"] for r in self.call(lambda: list(self.client.list_rses(expression)))}

    def check_expressions(self, expressions: Iterable[str | None]) -> None:
        """Every expression must resolve to at least one RSE; BadInput names the first that does not."""
        for expression in sorted(set(filter(None, expressions))):
            try:
                if not self.call(lambda e=expression: list(self.client.list_rses(e))):
                    raise BadInput(f"RSE expression {expression!r} matches no RSE")
            except GaveUp as failure:
                if isinstance(failure.original, rucio_exc.InvalidRSEExpression):
                    raise BadInput(f"invalid RSE expression {expression!r}") from None
                raise

    def has_distance(self, source: str, destination: str) -> bool:
        """Whether Rucio has a distance from one RSE to another: without one the conveyor finds no
        path between them and marks the request NO_SOURCES, however many replicas the source holds."""
        return bool(self.call(lambda: list(self.client.get_distance(source, destination))))
