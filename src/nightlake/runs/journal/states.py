"""The state machine every journal shares: the same for every run kind; a journal class only
declares its own:

- `State`, an enum with a `FAILED` member, and `ALLOWED_FROM` (target state -> the states it may
  be entered from). `mark`/`mark_each` enforce it in one transaction: a transition from the wrong
  state raises `IllegalTransition` and changes nothing, which turns a flow bug into an error
  instead of a duplicate transfer.
- `FAILABLE`: the states `fail` may take a file from. A failed file keeps the state it failed in
  (`failed_from`), its error class and original message; `requeue_failed` puts it back there, so
  an uncertain state goes through reconcile again.
- `ATTEMPT_ON`: entering these states counts one more attempt (FAILED: a failure is an attempt).
- `UPDATABLE`: the per-file columns a transition may set; a value given as None keeps what is known.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

SQLITE_MAX_VARS = 990  # Rucio's SQLite limit too; keeps IN (...) lists portable


class IllegalTransition(Exception):
    """A bulk transition met files in a state it may not leave from; nothing was changed."""


class StateMachine:
    """Transitions, failures and counts over a journal's `files` table (see the module docstring);
    mixed into `SQLiteJournal`, whose `_tx` and `_query` it uses."""

    State: ClassVar[type[enum.Enum]]
    ALLOWED_FROM: ClassVar[Mapping[Any, tuple]]
    FAILABLE: ClassVar[tuple]
    ATTEMPT_ON: ClassVar[frozenset] = frozenset()
    UPDATABLE: ClassVar[frozenset[str]] = frozenset()

    def mark(self, ids: Iterable[int], state: enum.Enum, **fields: Any) -> int:
        """Move `ids` to `state`, setting the same `fields` on each; all or none."""
        return self.mark_each(state, ({"id": i, **fields} for i in ids))

    def mark_each(self, state: enum.Enum, updates: Iterable[Mapping[str, Any]]) -> int:
        """Move files to `state` with per-file fields, e.g. {"id": 7, "pfn": ..., "adler32": ...}.

        One transaction; raises IllegalTransition (and changes nothing) if any file is not in a
        state `state` may be entered from. A field given as None keeps its value: a transition
        never erases what is known. Returns the number of files moved.
        """
        allowed = self.ALLOWED_FROM[state]
        updates = list(updates)
        keys = sorted({k for u in updates for k in u} - {"id"})
        if unknown := set(keys) - self.UPDATABLE:
            raise ValueError(f"mark: cannot set {sorted(unknown)}")
        if not updates:
            return 0
        sets = "".join(f", {k} = COALESCE(?, {k})" for k in keys)
        sql = (f"UPDATE files SET state = ?, attempts = attempts + ?, updated_at = ?{sets} WHERE id = ? "
               f"AND state IN ({','.join('?' * len(allowed))})")
        now, attempt = time.time(), int(state in self.ATTEMPT_ON)
        rows = [(state.value, attempt, now, *(u.get(k) for k in keys), u["id"], *(s.value for s in allowed))
                for u in updates]
        try:
            with self._tx() as db:
                before = db.total_changes
                db.executemany(sql, rows)
                if db.total_changes - before != len(rows):
                    raise IllegalTransition(state)
        except IllegalTransition:  # rolled back: explain from the states as they still are
            raise IllegalTransition(self._explain([u["id"] for u in updates], state)) from None
        return len(rows)

    def fail(self, files: Iterable[Any], error_class: Any, message: str) -> int:
        """Mark files (ids or records with an `id`) failed with their error class and original
        message. Files in a state that cannot fail (done, set aside) are left alone; returns how
        many were failed."""
        ids = [getattr(f, "id", f) for f in files]
        error_class = getattr(error_class, "value", error_class)
        attempt = int(self.State.FAILED in self.ATTEMPT_ON)
        sql = (f"UPDATE files SET failed_from = state, state = ?, attempts = attempts + ?, "
               f"error_class = ?, error_message = ?, updated_at = ? WHERE id = ? "
               f"AND state IN ({','.join('?' * len(self.FAILABLE))})")
        now, failable = time.time(), [s.value for s in self.FAILABLE]
        with self._tx() as db:
            before = db.total_changes
            db.executemany(sql, [(self.State.FAILED.value, attempt, error_class, message, now, i, *failable)
                                 for i in ids])
            return db.total_changes - before

    def requeue_failed(self) -> int:
        """Give every failed file another go from the state it failed in (the first state when a
        migrated journal does not know it); return how many."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("UPDATE files SET state = COALESCE(failed_from, ?), failed_from = NULL, "
                       "error_class = NULL, error_message = NULL, updated_at = ? WHERE state = ?",
                       (next(iter(self.State)).value, time.time(), self.State.FAILED.value))
            return db.total_changes - before

    def counts(self) -> dict[Any, int]:
        """Number of files per state, every state present."""
        return self._per_state("COUNT(*)")

    def bytes_by_state(self) -> dict[Any, int]:
        return self._per_state("COALESCE(SUM(bytes), 0)")

    def unknown_states(self) -> dict[str, tuple[int, int]]:
        """(files, bytes) per state in the journal that this nightlake does not know (a newer or
        damaged journal): readers report them instead of dropping their files."""
        known = {s.value for s in self.State}
        rows = self._query("SELECT state, COUNT(*), COALESCE(SUM(bytes), 0) FROM files GROUP BY state")
        return {state: (files, size) for state, files, size in rows if state not in known}

    def _per_state(self, aggregate: str) -> dict[Any, int]:
        rows = dict(self._query(f"SELECT state, {aggregate} FROM files GROUP BY state"))
        return {s: rows.get(s.value, 0) for s in self.State}

    def per_state_by(self, by: str) -> list[tuple]:
        """(*`by` columns, state, files, bytes) for each value of `by` (e.g. "rse" or "scope, dataset")
        and state, in one GROUP BY: per-dataset and per-RSE tables without listing a file."""
        return self._query(f"SELECT {by}, state, COUNT(*), COALESCE(SUM(bytes), 0) FROM files "
                           f"GROUP BY {by}, state ORDER BY {by}")

    def error_groups(self, states: Sequence[enum.Enum], by: str = "error_class") -> list[tuple]:
        """(*`by` columns, files, bytes, one sample message) per group of files in `states` (failed,
        set aside), largest first: what summaries and reports show, never a list of files."""
        marks, group = ",".join("?" * len(states)), by.count(",") + 1
        return self._query(f"SELECT {by}, COUNT(*), COALESCE(SUM(bytes), 0), MAX(error_message) FROM files "
                           f"WHERE state IN ({marks}) GROUP BY {by} ORDER BY {group + 1} DESC",
                           [s.value for s in states])

    def _explain(self, ids: list[int], state: enum.Enum) -> str:
        """Name the files a refused transition stumbled on, with the state they are in."""
        allowed = {s.value for s in self.ALLOWED_FROM[state]}
        found: dict[int, str] = {}
        for start in range(0, len(ids), SQLITE_MAX_VARS):
            chunk = ids[start:start + SQLITE_MAX_VARS]
            found.update(self._query(f"SELECT id, state FROM files WHERE id IN ({','.join('?' * len(chunk))})",
                                     chunk))
        seen: set[int] = set()
        bad = []
        for i in ids:
            why = "listed twice" if i in seen else found.get(i, "missing")
            seen.add(i)
            if why not in allowed:
                bad.append((i, why))
        sample = ", ".join(f"{i}:{s}" for i, s in bad[:5])
        return (f"{len(bad)} file(s) cannot move to {state.value} (allowed from "
                f"{sorted(allowed)}): {sample}{' ...' if len(bad) > 5 else ''}")
