"""Attacks, one registry: ``ATTACKS.get(name)(**knobs)(source, target, x, y, budget)``.

``base`` holds what they share, ``transfer`` the white-box iterative attacks whose result
transfers to the target, ``query`` the black-box attacks that query the target's scores.
"""

from siblings.attacks import query, transfer  # noqa: F401  (registers the attacks)
from siblings.attacks.base import ATTACKS, NORMS, AttackResult, BlackBox, Budget

__all__ = ["ATTACKS", "NORMS", "AttackResult", "BlackBox", "Budget"]
