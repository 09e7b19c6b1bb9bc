"""The structure figures of issue 17: the largest modules, and import cycles among the project's
modules (``TYPE_CHECKING`` blocks excluded), first of module-level imports, then counting the
imports inside functions too (late imports that only hide a cycle)::

    python tests/benchmarks/structure_stats.py [--top 12]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hypergrad", "baselines", "bench")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(tree: ast.Module, name: str, is_pkg: bool, anywhere: bool) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        deep = anywhere or isinstance(node, ast.If | ast.Try)
        for sub in (ast.walk(node) if deep else [node]):
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - sub.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found |= {f"{base}.{a.name}" for a in sub.names}
    return found


def graph(anywhere: bool = False) -> dict[str, set[str]]:
    mods = modules()
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        imported = _imports(tree, name, path.name == "__init__.py", anywhere)
        edges[name] = {m for m in imported if m in mods and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in modules().items()),
                   reverse=True)
    print("largest modules (lines):")
    for lines, name in sizes[: args.top]:
        print(f"  {lines:5d}  {name}")
    for anywhere, what in ((False, "at module level"),
                           (True, "counting imports inside functions too")):
        found = cycles(graph(anywhere))
        print(f"import cycles among the project's modules, {what}: {len(found)}")
        for c in found:
            print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
