"""Code fingerprints per component: a job reruns when code it runs changes, and only then.

Snakemake reruns a job when its params change but never looks inside an imported package,
so each rule's params carry ``code_hash(stage, **uses)``. The unit hashed is a top-level
statement of a ``siblings`` module, as its syntax tree without docstrings, so editing a
comment or a docstring reruns nothing. A job's fingerprint covers:

- its stage module (``stages/<stage>.py``), whole: the stage's own plumbing;
- the registered entries the job uses (its architecture, compression, defense, attack,
  dataset), found by the statement each registry recorded (``Registry.origin``);
- every top-level definition those reach by name, in any module, imports followed, so a
  shared helper counts for the jobs whose code calls it;
- in each module reached: the statements that bind no name (``matplotlib.use``), and every
  registration into a registry reached (all range observers, all norms).

The entries of the component registries (:data:`COMPONENTS`) count only for the jobs that
use them: adding a compression method to ``compress.py`` plans that method's jobs alone.
Code reached through ``getattr`` or strings is invisible to this analysis; the package
reaches its parts by name or through the registries.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from siblings.attacks import ATTACKS
from siblings.compress import COMPRESSIONS
from siblings.data import DATASETS
from siblings.defend import DEFENSES
from siblings.models import ARCHITECTURES
from siblings.registry import PACKAGE, Origin, Registry

SRC = Path(__file__).resolve().parent
# The registries a job picks entries from by config: each job hashes only its own entries.
COMPONENTS: dict[str, Registry] = {
    "architecture": ARCHITECTURES, "dataset": DATASETS, "compression": COMPRESSIONS,
    "defense": DEFENSES, "attack": ATTACKS,
}
REGISTERING = ("register", "register_family")

Ref = tuple[str, "str | None"]  # (module, top-level name); name None: the whole module
Statement = tuple[str, int]  # (module, index of the top-level statement)


def _strip_docstrings(tree: ast.AST) -> None:
    """Removes, in place, the docstrings of the functions and classes in ``tree``."""
    for sub in ast.walk(tree):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub.body:
            first = sub.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                sub.body = sub.body[1:] or [ast.Pass()]


def _bound(node: ast.AST) -> set[str]:
    """The module-level names a top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {a.asname or a.name.split(".")[0] for a in node.names}
    names: set[str] = set()
    for child in ast.iter_child_nodes(node):
        names |= _bound(child) if isinstance(child, ast.stmt) else _stored(child)
    return names


def _stored(node: ast.AST) -> set[str]:
    """Names an expression assigns in its own scope: not a lambda's or a comprehension's
    variables, which bind nothing at module level."""
    if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                         ast.GeneratorExp)):
        return set()
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Store) else set()
    return set().union(*(_stored(child) for child in ast.iter_child_nodes(node)))


class _Package:
    """The modules of one source tree as they are now, each parsed once."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.paths = {_dotted(src, p): p for p in sorted(src.rglob("*.py"))}
        self._parsed: dict[str, _Module] = {}

    def has_module(self, name: str) -> bool:
        return name in self.paths

    def parsed(self, name: str) -> "_Module":
        if name not in self._parsed:
            self._parsed[name] = _parse(name, self.paths[name], self)
        return self._parsed[name]


def _dotted(src: Path, path: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass
class _Module:
    """One module's top-level statements, what each binds, names and registers into."""

    name: str
    dumps: list[str]
    spans: list[tuple[int, int]]
    binds: dict[str, list[int]]
    aliases: dict[str, Ref]  # top-level imports of package names
    refs: list[set[Ref]]
    registers: list[Ref | None]
    unbound: list[int]  # statements binding no name: they run whenever the module loads


def _module_ref(dotted: str, package: _Package) -> Ref | None:
    """The ref of ``siblings.<dotted>`` as a module, a module's name, or None outside."""
    if dotted == PACKAGE:
        return ("", None)
    if not dotted.startswith(PACKAGE + "."):
        return None
    inner = dotted[len(PACKAGE) + 1:]
    if package.has_module(inner):
        return (inner, None)
    module, _, name = inner.rpartition(".")
    return (module, name)


def _import_aliases(node: ast.AST, package: _Package) -> dict[str, Ref]:
    """Local name -> ref for every ``siblings`` import inside ``node``."""
    aliases: dict[str, Ref] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
            for a in sub.names:
                ref = _module_ref(f"{sub.module}.{a.name}", package)
                if ref is not None:
                    aliases[a.asname or a.name] = ref
        elif isinstance(sub, ast.Import):
            for a in sub.names:
                ref = _module_ref(a.name if a.asname else a.name.split(".")[0], package)
                if ref is not None:
                    aliases[a.asname or a.name.split(".")[0]] = ref
    return aliases


def _resolve(chain: list[str], ref: Ref, package: _Package) -> Ref:
    """Follows ``alias.attr.attr`` from a module ref down submodules to a name."""
    module, name = ref
    for attr in chain:
        if name is not None:
            break
        sub = f"{module}.{attr}" if module else attr
        module, name = (sub, None) if package.has_module(sub) else (module, attr)
    return (module, name)


def _names(node: ast.AST, module: str, binds: dict[str, list[int]],
           aliases: dict[str, Ref], package: _Package) -> set[Ref]:
    """The refs a statement names: imported modules' attributes, imported names, and this
    module's own top-level names."""
    local = _import_aliases(node, package)
    aliases = {**aliases, **local}
    refs: set[Ref] = set(local.values())
    handled: set[int] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            chain, base = [], sub
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and id(base) not in handled and base.id in aliases:
                if aliases[base.id][1] is None:
                    refs.add(_resolve(chain, aliases[base.id], package))
                    handled.add(id(base))
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and id(sub) not in handled:
            if sub.id in aliases:
                refs.add(aliases[sub.id])
            elif sub.id in binds:
                refs.add((module, sub.id))
    return refs


def _registry_of(node: ast.stmt) -> ast.expr | None:
    """The registry a top-level statement registers into (``R.register(..)``, directly or
    as a decorator), as the expression naming it."""
    calls = node.decorator_list if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.ClassDef)) else []
    if isinstance(node, ast.Expr):
        calls = [node.value]
    for call in calls:
        while isinstance(call, ast.Call):
            if isinstance(call.func, ast.Attribute) and call.func.attr in REGISTERING:
                return call.func.value
            call = call.func
    return None


def _parse(name: str, path: Path, package: _Package) -> _Module:
    tree = ast.parse(path.read_text())
    _strip_docstrings(tree)
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                              ast.Constant):
        body = body[1:]  # the module docstring
    body = [s for s in body if not (isinstance(s, ast.ImportFrom) and s.module == "__future__")]
    binds: dict[str, list[int]] = {}
    for i, stmt in enumerate(body):
        for bound in _bound(stmt):
            binds.setdefault(bound, []).append(i)
    aliases = _import_aliases(ast.Module(body=[s for s in body if isinstance(
        s, (ast.Import, ast.ImportFrom, ast.If, ast.Try))], type_ignores=[]), package)
    refs = [_names(s, name, binds, aliases, package) for s in body]
    registers = []
    for s in body:
        registry = _registry_of(s)
        found = _names(registry, name, binds, aliases, package) if registry is not None else set()
        registers.append(next(iter(found)) if len(found) == 1 else None)
    spans = [(min([s.lineno, *(d.lineno for d in getattr(s, "decorator_list", []))]),
              s.end_lineno or s.lineno) for s in body]
    return _Module(name, [ast.dump(s) for s in body], spans, binds, aliases,
                   refs, registers, [i for i, s in enumerate(body) if not _bound(s)])


class _Closure:
    """The statements one root reaches (see the module docstring)."""

    def __init__(self, package: _Package, components: set[Statement],
                 registrations: dict[Ref, list[Statement]]) -> None:
        self.package = package
        self.components = components
        self.registrations = registrations
        self.seen: set[Statement] = set()
        self.touched: set[str] = set()

    def add_statement(self, stmt: Statement) -> None:
        if stmt in self.seen:
            return
        self.seen.add(stmt)
        module, index = stmt
        self.touch(module)
        for ref in self.package.parsed(module).refs[index]:
            self.add_ref(ref)

    def add_ref(self, ref: Ref) -> None:
        module, name = ref
        if not self.package.has_module(module):
            return
        parsed = self.package.parsed(module)
        self.touch(module)
        if name in parsed.aliases:  # a name this module imports: follow it to its home
            self.add_ref(parsed.aliases[name])
            return
        indices = range(len(parsed.dumps)) if name is None else parsed.binds.get(name, [])
        for i in indices:
            self.add_statement((module, i))
        for stmt in self.registrations.get(ref, []):
            self.add_statement(stmt)

    def touch(self, module: str) -> None:
        """A module that loads runs its unbound statements, and so do its packages' and the
        modules it imports at its top level (``from siblings.attacks import query``)."""
        parts = module.split(".") if module else []
        for depth in range(len(parts) + 1):
            package = ".".join(parts[:depth])
            if package in self.touched or not self.package.has_module(package):
                continue
            self.touched.add(package)
            parsed = self.package.parsed(package)
            for i in parsed.unbound:
                if (package, i) not in self.components:
                    self.add_statement((package, i))
            for imported, _ in parsed.aliases.values():
                self.touch(imported)


class Fingerprints:
    """The code fingerprints of one source tree as it is when this is made (the planner
    makes one per plan; edit the tree, make another)."""

    def __init__(self, components: Iterable[Origin], src: Path = SRC) -> None:
        self.package = _Package(src)
        self.components = {self.statement(o) for o in components}
        self.registrations: dict[Ref, list[Statement]] = {}
        for module in self.package.paths:
            for i, registry in enumerate(self.package.parsed(module).registers):
                if registry is not None and (module, i) not in self.components:
                    self.registrations.setdefault(self.home(registry), []).append((module, i))
        self._reached: dict[str | Origin, frozenset[Statement]] = {}
        self._digests: dict[frozenset[str | Origin], str] = {}

    def home(self, ref: Ref) -> Ref:
        """Where a name is defined, following re-exports (``from siblings.attacks import
        NORMS`` names ``attacks.base``'s)."""
        module, name = ref
        while self.package.has_module(module) and name in self.package.parsed(module).aliases:
            module, name = self.package.parsed(module).aliases[name]
        return (module, name)

    def statement(self, origin: Origin) -> Statement:
        spans = self.package.parsed(origin.module).spans
        index = next((i for i, (a, b) in enumerate(spans) if a <= origin.line <= b), None)
        if index is None:
            raise ValueError(f"no top-level statement at {origin.module}:{origin.line}")
        return (origin.module, index)

    def reached(self, root: str | Origin) -> frozenset[Statement]:
        """What one root reaches: a whole module (its dotted name inside the package) or
        one registered entry's statement."""
        if root not in self._reached:
            closure = _Closure(self.package, self.components, self.registrations)
            if isinstance(root, Origin):
                closure.add_statement(self.statement(root))
            else:
                closure.add_ref((root, None))
            self._reached[root] = frozenset(closure.seen)
        return self._reached[root]

    def statements(self, roots: Iterable[str | Origin]) -> list[Statement]:
        """Every statement the roots reach (a fingerprint's content), in file order."""
        return sorted(set().union(*(self.reached(r) for r in roots)))

    def digest(self, roots: Iterable[str | Origin]) -> str:
        """12-hex fingerprint of what ``roots`` reach."""
        key = frozenset(roots)
        if key not in self._digests:
            h = hashlib.sha256()
            for module, index in self.statements(key):
                h.update(f"{module}\0{self.package.parsed(module).dumps[index]}\0".encode())
            self._digests[key] = h.hexdigest()[:12]
        return self._digests[key]

    def code_hash(self, stage: str, **uses: str | Iterable[str]) -> str:
        """The fingerprint of a ``stage`` job that uses the named components, e.g.
        ``code_hash("compress", architecture="resnet18", compression="ptq")``."""
        return self.digest((f"stages.{stage}", *uses_origins(uses)))


def uses_origins(uses: dict[str, str | Iterable[str]]) -> list[Origin]:
    """Where each named component entry was registered (``{"compression": "ptq"}``)."""
    origins = []
    for kind, names in sorted(uses.items()):
        for name in sorted({names} if isinstance(names, str) else set(names)):
            origin = COMPONENTS[kind].origin(name)
            if origin is not None:
                origins.append(origin)
    return origins


def component_origins() -> list[Origin]:
    """Every registering statement of the component registries."""
    return [o for registry in COMPONENTS.values() for o in registry.origins()]


def fingerprints(src: Path = SRC) -> Fingerprints:
    """The fingerprints of the source tree ``src`` with this process's registries."""
    return Fingerprints(component_origins(), src)
