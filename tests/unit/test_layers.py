"""The import rules of docs/architecture.md: imports point downward only."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "c1222"

# Each package and what it may import from this project (besides itself).
BASE = {"errors", "codes", "limits", "_mypyc"}
ALLOWED = {
    "base": BASE,
    "codec": BASE,
    "crypto": BASE | {"codec"},
    "tables": BASE | {"codec"},
    "session": BASE | {"codec", "crypto", "tables"},
    "transport": BASE | {"codec", "crypto", "tables", "session"},
    "meter": BASE | {"codec", "crypto", "tables", "session", "transport"},
    # workers: the processes a layer starts end with it (threads and polling: impure)
    "headend": BASE | {"codec", "crypto", "tables", "session", "transport", "workers"},
    "relay": BASE | {"codec", "crypto", "tables", "session", "transport"},
    "ihd": BASE | {"codec", "crypto", "tables", "session", "transport"},
    # the fleet runs many meters: it builds on the meter's public pieces (loads, metrology,
    # services), never on the head-end's
    "fleet": BASE | {"codec", "crypto", "tables", "session", "transport", "meter", "workers"},
    "cli": BASE | {"codec", "crypto", "tables", "session", "transport", "meter", "headend",
                   "relay", "ihd", "fleet", "workers"},
}
PURE = {"codec", "crypto", "tables", "session"}
IMPURE_MODULES = {"socket", "asyncio", "threading", "logging", "time", "random", "selectors",
                  "subprocess", "multiprocessing"}


def _layer(path: Path, root: Path) -> str:
    rel = path.relative_to(root).parts
    return "base" if len(rel) == 1 else rel[0]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def violations(root: Path) -> list[str]:
    broken = []
    for path in sorted(root.rglob("*.py")):
        layer = _layer(path, root)
        if layer not in ALLOWED:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "c1222" and len(parts) > 1:
                target = parts[1]
                if target != layer and target not in ALLOWED[layer] and target != "__init__":
                    broken.append(f"{path.relative_to(root)} imports {name}")
            elif layer in PURE and parts[0] in IMPURE_MODULES:
                broken.append(f"{path.relative_to(root)} (pure) imports {name}")
    return broken


def test_imports_point_downward_and_pure_layers_stay_pure():
    assert violations(SRC) == []


def test_the_rule_checker_catches_violations(tmp_path):
    (tmp_path / "codec").mkdir()
    (tmp_path / "codec" / "x.py").write_text("import socket\nfrom c1222.transport import pcap\n")
    (tmp_path / "meter").mkdir()
    (tmp_path / "meter" / "y.py").write_text("from c1222.headend import store\nimport time\n")
    assert violations(tmp_path) == [
        "codec/x.py (pure) imports socket",
        "codec/x.py imports c1222.transport",
        "meter/y.py imports c1222.headend",
    ]
