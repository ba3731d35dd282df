"""Run a command line in this process, as `python -m <module> <args>` would in a subprocess.

A subprocess costs a Python and TensorFlow start (5-20 s on 2 cores); the tests of a command
line's flags, output and exit status do not need one. `run` executes the module as `__main__`
(its `if __name__ == "__main__":` block defines the flags and calls `absl.app.run`), with
`sys.argv`, stdout and stderr of its own, and returns what `subprocess.run(...,
capture_output=True, text=True)` would: the exit status (0, the `SystemExit` code, or 1 with the
`SystemExit` message written to stderr as the interpreter does), stdout and stderr. Any other
exception propagates (in a subprocess it would be a traceback and a non-zero status, which
every caller asserts against). Afterwards the global absl FLAGS are as before (the flags the
module defined are removed, the others get back their values and parsed state), and so are op
determinism and the Keras precision policy that a main's `training.configure_process` sets.

Tests about the process itself (SIGKILL, a fresh interpreter without the package, several
processes) still start subprocesses.
"""

import contextlib
import dataclasses
import io
import runpy
import sys
import warnings

from absl import app, flags


@dataclasses.dataclass
class Completed:
  """What `subprocess.run(..., capture_output=True, text=True)` returns, the parts tests read."""

  args: list
  returncode: int
  stdout: str
  stderr: str


def _exit_status(code, stderr) -> int:
  """The process's exit status for `sys.exit(code)` (what the interpreter does with it)."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=stderr)
  return 1


@contextlib.contextmanager
def restoring_flags():
  """The global absl FLAGS as they were after the block: flags defined in it removed, values and parsed state back."""
  fv = flags.FLAGS
  app.define_help_flags()  # Once per process (absl): defined before the snapshot, so kept.
  before = {name: (fv[name].value, fv[name].present, fv[name].using_default_value) for name in fv}
  was_parsed = fv.is_parsed()
  try:
    yield
  finally:
    for name in [name for name in fv if name not in before]:
      delattr(fv, name)
    fv.unparse_flags()
    for name, (value, present, using_default) in before.items():
      flag = fv[name]
      flag.value, flag.present, flag.using_default_value = value, present, using_default
    if was_parsed:
      fv.mark_as_parsed()


def run(module: str, args) -> Completed:
  """Runs `python -m module *args` in this process (see the module docstring)."""
  from omg_cnnrnn import training  # Here: importing this helper does not import TensorFlow.

  argv, out, err = list(sys.argv), io.StringIO(), io.StringIO()
  sys.argv = [module, *map(str, args)]  # runpy puts the module's file path first, as `-m` does.
  status = 0
  try:
    with restoring_flags(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
         warnings.catch_warnings(), training.restoring_process_settings():
      # runpy warns when the module was imported before (another test did): harmless here.
      warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
      try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
      except SystemExit as e:
        status = _exit_status(e.code, err)
  finally:
    sys.argv = argv
  return Completed([sys.executable, "-m", module, *map(str, args)], status, out.getvalue(), err.getvalue())
