"""The layers of docs/architecture.md, checked: every import inside src/unetlab (at module level or inside a
function) goes to the same layer or a lower one, and no files or packages import each other in a circle.

    python scripts/check_layers.py [src/unetlab]

Prints each upward import and each cycle (files; packages = the top-level subpackages and modules of unetlab, the
package root's re-exports not counted) and exits 1 if there is any. Nothing is imported or run: the files are
parsed.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = (  # lowest first; a package may import its own layer and the layers below
    ("version", "atomic", "errors", "checkpoint", "seeding", "patching", "schedules", "unet"),
    ("data", "metrics", "models", "eval"),
    ("accel",),
    ("analysis", "recipes", "video"),
    ("train", "codi", "vdm", "diffenc", "likelihood"),
    ("loading",),
    ("bench", "commands", "cli", "testing", None),  # None: the package root (it re-exports the public API)
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` (a package's __init__ named as the package)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the unetlab modules it imports anywhere in its file (`from x import y`: x.y if a module, else x)."""

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = defaultdict(set)
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == mod.split(".")[0] and (hit := known(target)) and hit != mod:
                    edges[mod].add(hit)
    return edges


def cycles(nodes, edges) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def package(mod: str) -> str | None:
    """The top-level subpackage or module of `mod`; None for the package root."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/unetlab")
    mods = modules(root)
    edges = imports(mods)
    problems = []
    unplaced = sorted({p for m in mods if (p := package(m)) and p not in LAYER})
    problems += [f"not in a layer: {p} (add it to LAYERS and docs/architecture.md)" for p in unplaced]
    pkg_edges = defaultdict(set)
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            pa, pb = package(a), package(b)
            if pa is None or pa == pb:
                continue
            pkg_edges[pa].add(pb or "<root>")
            if LAYER.get(pb, -1) > LAYER.get(pa, len(LAYERS)):
                problems.append(f"upward: {a} -> {b}")
    problems += ["file cycle: " + " <-> ".join(c) for c in cycles(list(mods), edges)]
    problems += ["package cycle: " + ", ".join(c) for c in cycles(sorted(pkg_edges), pkg_edges)]
    print("\n".join(problems) or f"{len(mods)} files: no upward import, no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
