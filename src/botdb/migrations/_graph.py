"""The revision graph as botdb reports it: applied sets, branch tips, oldest-first order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alembic.script import Script, ScriptDirectory

__all__ = ["ancestors", "describe_revision", "oldest_first", "tips"]


def ancestors(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """Every revision a set of applied heads implies applied (dependencies included)."""
    seen: set[str] = set()
    stack = list(heads)
    while stack:
        rev = script.get_revision(stack.pop())
        if rev is None or rev.revision in seen:
            continue
        seen.add(rev.revision)
        stack.extend(rev._all_down_revisions)
    return seen


def tips(script: ScriptDirectory, applied: set[str]) -> list[str]:
    """The applied revisions that no other applied revision follows in its own branch.

    Alembic stores only the revisions that imply the others, so a user revision that depends
    on botdb's head hides it; this lists botdb's head too.
    """
    parents: set[str] = set()
    for revision in applied:
        rev = script.get_revision(revision)
        if rev is not None:
            down = rev.down_revision
            parents.update([down] if isinstance(down, str) else (down or ()))
    return sorted(applied - parents)


def oldest_first(script: ScriptDirectory) -> list[Script]:
    """Every revision, each after everything it depends on."""
    revisions = {rev.revision: rev for rev in script.walk_revisions()}
    ordered: list[Script] = []
    placed: set[str] = set()

    def place(rev: Script) -> None:
        if rev.revision in placed:
            return
        placed.add(rev.revision)
        for parent in sorted(rev._all_down_revisions):
            if parent in revisions:
                place(revisions[parent])
        ordered.append(rev)

    for rev in sorted(revisions.values(), key=lambda r: r.revision):
        place(rev)
    return ordered


def describe_revision(rev: Script, applied: bool) -> dict[str, Any]:
    down = rev.down_revision
    return {
        "revision": rev.revision,
        "down_revision": list(down) if isinstance(down, tuple | list) else down,
        "message": rev.doc,
        "branch_labels": sorted(rev.branch_labels),
        "depends_on": sorted(rev._resolved_dependencies),
        "is_head": rev.is_head,
        "is_applied": applied,
        "path": rev.path,
    }
