"""The package's import graph (every import of one simgen module by another, at module level
or inside a function) has no loop: a module can be read, tested and replaced knowing only the
modules below it."""
import ast
import os

import networkx as nx

import simgen

ROOT = os.path.dirname(simgen.__file__)


def import_graph() -> nx.DiGraph:
    mods = {}
    for dp, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dp, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel[:-9] if rel.endswith(".__init__") else rel] = os.path.join(dp, f)
    g = nx.DiGraph()
    for m, path in mods.items():
        g.add_node(m)
        pkg = m if path.endswith("__init__.py") else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs + ([base] if len(subs) < len(node.names) else [])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            g.add_edges_from((m, t) for t in targets if t in mods and t != m)
    return g


def test_no_import_loops():
    g = import_graph()
    assert len(g) > 30 and g.has_edge("simgen.pipeline", "simgen.scenes")  # the graph is the package's
    loops = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert loops == [], f"import loops: {loops}"


def test_the_bottom_modules_import_nothing_of_simgen():
    g = import_graph()
    for m in ("simgen.errors", "simgen.version", "simgen.seeds", "simgen.view", "simgen.native"):
        assert list(g.successors(m)) == [], m
