"""The product's shape, checked: what issue "From lab notebook to product" asked for stays true.

    python tools/check_shape.py        # prints each rule and exits 1 when one is broken

Rules: the README is at most 300 lines; `easynet train --help` lists at most 20 options; no closed experiment's
name or "not adopted" in easynet/ or app/; no import cycle (easynet/ at module level, app/ at all); the UI layer (app/,
app.py) imports neither torch nor the modules under the Predictor (checkpoint, model, geometry, synthetic data,
fastpath, train, evaluate); benchmarks/ holds product benchmarks, not research notes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
TRAIN_MAX_OPTIONS = 20
RETIRED = (
    "depth_residual", "depth_head", "fused_rgb_dropout", "fused_depth_view_weight", "fused_attention_warmup",
    "depth_profile_weights", "depth_amplitude_mm", "not adopted",
)  # fmt: skip
UI_MUST_NOT_IMPORT = (
    "torch", "easynet.checkpoint", "easynet.model", "easynet.data.geometry", "easynet.data.synthetic",
    "easynet.fastpath", "easynet.train", "easynet.evaluate",
)  # fmt: skip
RESEARCH_WORDS = ("not adopted", "rule written before", "commit ")


def _python_files(*folders: str) -> list[Path]:
    files = []
    for name in folders:
        path = REPO / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules a file imports (every import, or only those at module level), absolute names."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    package = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def readme_lines() -> list[str]:
    n = len((REPO / "README.md").read_text().splitlines())
    return [] if n <= README_MAX_LINES else [f"README.md has {n} lines, more than {README_MAX_LINES}"]


def train_options() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "easynet", "train", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    options = {word.rstrip(",") for line in out.splitlines() for word in line.split() if word.startswith("--")}
    options.discard("--help")
    if len(options) <= TRAIN_MAX_OPTIONS:
        return []
    return [f"`easynet train --help` lists {len(options)} options, more than {TRAIN_MAX_OPTIONS}"]


def retired_names() -> list[str]:
    problems = []
    for path in _python_files("easynet", "app", "app.py"):
        text = path.read_text()
        problems += [f"{path.relative_to(REPO)} mentions {word!r}" for word in RETIRED if word in text]
    return problems


def import_cycles() -> list[str]:
    """Cycles among easynet/'s module-level imports (a lazy import there keeps an optional dependency optional)
    and among app/'s imports of any kind."""
    return _cycles("easynet", top_level_only=True) + _cycles("app", top_level_only=False)


def _cycles(folder: str, top_level_only: bool) -> list[str]:
    modules = {_module(p): p for p in _python_files(folder)}
    graph = {
        m: {i for i in _imports(p, top_level_only) if i in modules and i not in (m, folder)} for m, p in modules.items()
    }
    problems, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                problems.append("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return problems


def ui_imports() -> list[str]:
    problems = []
    for path in _python_files("app", "app.py"):
        for name in _imports(path, top_level_only=False):
            if any(name == bad or name.startswith(bad + ".") for bad in UI_MUST_NOT_IMPORT):
                problems.append(f"{path.relative_to(REPO)} imports {name}")
    return sorted(set(problems))


def benchmarks_are_product() -> list[str]:
    problems = []
    for path in sorted((REPO / "benchmarks").rglob("*")):
        if path.is_dir():
            problems.append(f"benchmarks/ has a sub-folder {path.relative_to(REPO)}; research goes to research/")
        elif path.suffix == ".md":
            text = path.read_text().lower()
            problems += [f"{path.relative_to(REPO)} reads like research notes ({w!r})" for w in RESEARCH_WORDS
                         if w in text]  # fmt: skip
    return problems


RULES = {
    "README at most 300 lines": readme_lines,
    "train --help at most 20 options": train_options,
    "no closed experiment in easynet/ or app/": retired_names,
    "no import cycle in easynet/": import_cycles,
    "the UI imports no torch, checkpoint or model code": ui_imports,
    "benchmarks/ holds product benchmarks only": benchmarks_are_product,
}


def check() -> dict[str, list[str]]:
    """Each rule's problems (an empty list when it holds)."""
    return {name: rule() for name, rule in RULES.items()}


def main() -> int:
    broken = 0
    for name, problems in check().items():
        print(f"{'ok  ' if not problems else 'FAIL'} {name}")
        for p in problems:
            print(f"       {p}")
        broken += bool(problems)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
