"""The package's layout (README "Contributing"): libraries never import command lines, no import circle.

The import graph is read from the source (`ast`), every `import` counted wherever it stands
(module level or inside a function), so a function-level import cannot hide a circle.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("omg_cnnrnn", "data_prep")
# Command lines: a short main (flags, `main`, `run`) over library modules; nothing imports them
# (the console scripts and `python -m` run them).
COMMAND_LINES = ("omg_cnnrnn.predict",)
# Files outside the packages that must not import a command line either.
OTHER_DIRS = ("tests", "experiments")


def _module_files(package_dirs=PACKAGES) -> dict[str, str]:
  out = {}
  for package in package_dirs:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          out[module.removesuffix(".__init__")] = path
  return out


MODULES = _module_files()


def imported_modules(path: str, module: str | None = None) -> set[str]:
  """The project modules `path` imports, anywhere in the file (`from pkg import sub` counts as `pkg.sub`)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = (module or "").split(".")
        parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
        base = ".".join(parts + ([base] if base else []))
      subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
      found.update(subs if subs else [base])
  return {m for m in found if m in MODULES and m != module}


def import_graph() -> dict[str, set[str]]:
  return {module: imported_modules(path, module) for module, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1 or v in graph[v]:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_cycle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []
  hidden = tmp_path / "m.py"
  hidden.write_text("def f():\n  from omg_cnnrnn import predict\n  return predict\n")
  assert imported_modules(str(hidden)) == {"omg_cnnrnn.predict"}


def test_no_import_circle():
  assert cycles(import_graph()) == []


@pytest.mark.parametrize("command_line", COMMAND_LINES)
def test_nothing_imports_a_command_line(command_line):
  assert command_line in MODULES
  importers = [m for m, deps in import_graph().items() if command_line in deps]
  for folder in OTHER_DIRS:
    for path in sorted(os.listdir(os.path.join(ROOT, folder))):
      if path.endswith(".py") and command_line in imported_modules(os.path.join(ROOT, folder, path)):
        importers.append(f"{folder}/{path}")
  assert importers == [], f"{command_line} is a command line; import its library instead"

