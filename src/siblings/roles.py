"""The source roles: which model an attack or a similarity measurement starts from.

Names only, so the planner and the report can use them without loading any model code.
"""

from __future__ import annotations

# sibling: a published compressed model; independent: same arch, other seed; cross-arch:
# another architecture's full model; whitebox: the target itself (the upper bound);
# defended: a sibling after the defense. The adaptive attackers, each run on the defended
# sibling and, as its reference, on the sibling as published: reversed, the gradient
# negated (against the cosine penalty, which can point gradients away); extracted, a fresh
# model distilled from the sibling's scores; averaged, the gradient averaged over random
# points around the image. ``none`` is not configurable: the role of attacks that take no
# source (RGF, Square), so they run once per target.
ADAPTIVE_ROLES = ("reversed", "extracted", "averaged")
SOURCE_ROLES = ("sibling", "independent", "cross-arch", "whitebox", "defended", *ADAPTIVE_ROLES)
NO_SOURCE = "none"
# Roles whose source id is "<compression>+<defense>" (a defended sibling or one derived
# from it); an adaptive role's id is the bare "<compression>" on the undefended sibling.
DEFENDED_ROLES = ("defended", *ADAPTIVE_ROLES)


def defended_id(compression: str, defense: str) -> str:
    return f"{compression}+{defense}"
