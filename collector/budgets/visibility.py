"""Which budgets, blocks and budget events a key may see: those of its own project.

Admin keys, and collectors without keys, see everything. Every read of the budget API filters through here, so
a project's key never learns another project's limits, spend or blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..keys import Principal
from .scope import EACH

__all__ = ["scope_values", "visible_to"]


def visible_to(
    principal: Principal | None,
    scope: Mapping[str, str],
    values: Mapping[str, str] | None = None,
    blocks_all: bool = False,
) -> bool:
    """`scope`: a budget's or block's scope; `values`: the scope value of one split of it (`project=a,...`), or
    None for the definition itself, which a key sees when it is split per project (one split is its own).
    `blocks_all`: a block naming no project blocks every project, so every key sees it (its gate must refuse
    those calls too)."""
    if principal is None or principal.admin:
        return True
    project = (values or {}).get("project") or scope.get("project", "")
    if values is None and project == EACH:
        return True
    if blocks_all and not project:
        return True
    return project == principal.project


def scope_values(scope_value: str) -> dict[str, str]:
    """`project=a,user=u-1` back to its values."""
    return dict(part.split("=", 1) for part in scope_value.split(",") if "=" in part)
