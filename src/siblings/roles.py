"""The source roles: which model an attack or a similarity measurement starts from.

Names only, so the planner and the report can use them without loading any model code.
"""

from __future__ import annotations

# sibling: a published compressed model; independent: same arch, other seed; cross-arch:
# another architecture's full model; whitebox: the target itself (the upper bound);
# defended: a sibling after the defense; reversed: the defended sibling with its gradient
# negated, and extracted: a fresh model distilled from the defended sibling's scores (the
# two adaptive attackers). ``none`` is not configurable: the role of attacks that take no
# source (RGF, Square), so they run once per target.
SOURCE_ROLES = ("sibling", "independent", "cross-arch", "whitebox", "defended", "reversed",
                "extracted")
NO_SOURCE = "none"
# Roles whose source id is "<compression>+<defense>" (a defended sibling or one derived from it).
DEFENDED_ROLES = ("defended", "reversed", "extracted")


def defended_id(compression: str, defense: str) -> str:
    return f"{compression}+{defense}"
