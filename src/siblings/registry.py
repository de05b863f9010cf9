"""A name -> factory registry, the timm ``register_model`` pattern used for every pluggable part.

Architectures, datasets, compressions and attacks each keep one ``Registry``; adding a
component is one decorated function plus a config entry, and an unknown name fails with
the list of names that would have worked. Like timm's registry, each entry records where
it was registered (:class:`Origin`), so a job's code fingerprint can hash the entries it
uses and not their neighbours (``siblings.fingerprint``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
PACKAGE = "siblings"


class UnknownNameError(KeyError):
    """Raised for a name no component registered under; the message lists the allowed ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Origin:
    """Where an entry was registered: the module (dotted, inside the package: ``compress``,
    ``attacks.query``) and the line of the top-level statement that registered it."""

    module: str
    line: int


def _registering_statement() -> Origin | None:
    """The module-level statement running the registration: the first frame outward that
    executes a module body (a decorator may register from inside a helper). None outside
    the package (a test registering a throwaway entry)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame else ""
    if not name.startswith(PACKAGE + "."):
        return None
    return Origin(name[len(PACKAGE) + 1:], frame.f_lineno)


class Registry(Generic[T]):
    """Maps stable names to components of one kind (e.g. ``"architecture"``).

    A *family* (:meth:`register_family`) answers every name under a prefix, such as
    ``timm/<any timm model>``: its factory builds the entry on first use.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, Origin | None] = {}
        self._families: dict[str, tuple[Callable[[str], T], Origin | None]] = {}
        self._built: dict[str, T] = {}  # family members, built on first use

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that files ``item`` under ``name``; a duplicate name is a programming error."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            self._origins[name] = _registering_statement()
            return item

        return add

    def register_family(self, prefix: str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
        """Decorator that answers every ``<prefix><rest>`` with ``factory(rest)``; the
        factory raises ``UnknownNameError`` for a ``rest`` it cannot serve."""

        def add(factory: Callable[[str], T]) -> Callable[[str], T]:
            self._families[prefix] = (factory, _registering_statement())
            return factory

        return add

    def _family(self, name: str) -> tuple[str, Callable[[str], T], Origin | None] | None:
        for prefix, (factory, origin) in self._families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return prefix, factory, origin
        return None

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name not in self._built:
            family = self._family(name)
            if family is None:
                raise UnknownNameError(
                    f"unknown {self.kind} '{name}'; allowed: {', '.join(self.names())}"
                    + "".join(f", or {prefix}<name>" for prefix in sorted(self._families)))
            prefix, factory, origin = family
            self._built[name] = factory(name[len(prefix):])
            self._origins[name] = origin
        return self._built[name]

    def origin(self, name: str) -> Origin | None:
        """Where ``name`` was registered (for a family member: where its family was)."""
        self.get(name)
        return self._origins[name]

    def origins(self) -> list[Origin]:
        """Every registering statement of this registry, families included."""
        found = [*(self._origins[n] for n in self._items),
                 *(o for _, o in self._families.values())]
        return [o for o in found if o is not None]

    def names(self) -> list[str]:
        """The names registered one by one (a family's members are not listed)."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._items or name in self._built:
            return True
        if self._family(name) is None:
            return False
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
