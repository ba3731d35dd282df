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
COMMAND_LINES = ("omg_cnnrnn.predict", "omg_cnnrnn.export", "omg_cnnrnn.evaluate", "omg_cnnrnn.train",
                 "omg_cnnrnn.tf1")
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



# Set at import on purpose: OpenCV's FFmpeg backend reads the variable, and it must hold before
# `cv2` is imported; `setdefault` leaves a user's own value alone.
IMPORT_EFFECTS_ALLOWED = {"omg_cnnrnn.faces": ["os.environ.setdefault"]}


def _dotted(node) -> str:
  if isinstance(node, ast.Attribute):
    return f"{_dotted(node.value)}.{node.attr}"
  return node.id if isinstance(node, ast.Name) else ""


EFFECTS = ("os.umask", "os.putenv", "os.environ.setdefault", "os.environ.update", "os.environ.pop")


def import_effects(path: str) -> list[str]:
  """Process-wide changes made at import: `os.umask`, `os.putenv` and writes to `os.environ` outside functions."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  def effects(statement, helpers):
    found = []
    for node in ast.walk(statement):
      if isinstance(node, ast.Call) and (_dotted(node.func) in EFFECTS or _dotted(node.func) in helpers):
        found.append(helpers.get(_dotted(node.func), _dotted(node.func)))
      targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
          node, ast.AugAssign) else []
      found += [f"{_dotted(t.value)}[...] =" for t in targets
                if isinstance(t, ast.Subscript) and _dotted(t.value) == "os.environ"]
    return found

  # The module's own functions that change the process, called at import (one level deep).
  helpers = {}
  for statement in tree.body:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and effects(statement, {}):
      helpers[statement.name] = f"{statement.name}() -> {effects(statement, {})[0]}"
  found = []
  for statement in tree.body:
    if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      found += effects(statement, helpers)
  return found


def test_the_effect_finder_sees_umask_and_environment_writes(tmp_path):
  module = tmp_path / "m.py"
  module.write_text("import os\nos.environ['A'] = '1'\nMODE = 0o666 & ~os.umask(0)\n"
                    "def f():\n  os.umask(0)\ndef g():\n  return f\n")
  assert import_effects(str(module)) == ["os.environ[...] =", "os.umask"]
  module.write_text(module.read_text() + "MASK = f()\n")  # through a function of its own, called at import
  assert import_effects(str(module))[-1] == "f() -> os.umask"


def test_no_library_module_changes_the_process_at_import():
  effects = {m: import_effects(p) for m, p in MODULES.items() if m.startswith("omg_cnnrnn")}
  assert {m: e for m, e in effects.items() if e and e != IMPORT_EFFECTS_ALLOWED.get(m)} == {}
