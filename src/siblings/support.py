"""Which component applies to which architecture, decided before any job starts.

Architectures declare the capabilities that do not apply to them (``models.CAPABILITIES``);
compression methods and defenses declare the capabilities they rely on. A (architecture,
compression) or (architecture, defense) pair whose needs are not met is left out of the
plan and listed, with its reason, in the run's support matrix: it never becomes a job that
fails. A defended sibling is left out with its sibling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from siblings.compress import COMPRESSIONS
from siblings.defend import DEFENSES
from siblings.models import ARCHITECTURES, CAPABILITIES


@dataclass(frozen=True)
class Verdict:
    """One cell of the support matrix: ``reason`` is None where the pair is supported."""

    arch: str
    kind: str  # "capability", "compression" or "defense"
    component: str
    reason: str | None

    @property
    def supported(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        return {**asdict(self), "supported": self.supported}


def _unmet(needs: list[tuple[str, str]]) -> str | None:
    """The first unmet (architecture, capability) need, in words."""
    for arch, capability in needs:
        why = ARCHITECTURES.get(arch).why_not(capability)
        if why:
            return f"{arch} has no {capability} ({CAPABILITIES[capability]}): {why}"
    return None


class Support:
    """The support matrix of one validated config."""

    def __init__(self, config: dict) -> None:
        self.verdicts: list[Verdict] = []
        for arch in config["archs"]:
            self.verdicts += [Verdict(arch, "capability", c, ARCHITECTURES.get(arch).why_not(c))
                              for c in CAPABILITIES]
            for cid, params in config["compressions"].items():
                needs = COMPRESSIONS.get(params["method"]).needs(params, arch)
                self.verdicts.append(Verdict(arch, "compression", cid, _unmet(needs)))
            for did, params in config["defenses"].items():
                needs = [(arch, c) for c in DEFENSES.get(params["method"]).needs]
                self.verdicts.append(Verdict(arch, "defense", did, _unmet(needs)))
        self._cells = {(v.arch, v.kind, v.component): v for v in self.verdicts}

    def ok(self, arch: str, kind: str, component: str) -> bool:
        return self._cells[(arch, kind, component)].supported

    def defended_ok(self, arch: str, compression: str, defense: str) -> bool:
        """Whether the defended sibling ``compression+defense`` of ``arch`` is planned."""
        return self.ok(arch, "compression", compression) and self.ok(arch, "defense", defense)

    def left_out(self) -> list[Verdict]:
        """The pairs the plan leaves out (capabilities alone leave nothing out)."""
        return [v for v in self.verdicts if v.kind != "capability" and not v.supported]

    def rows(self) -> list[dict]:
        return [v.to_dict() for v in self.verdicts]
