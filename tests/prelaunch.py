"""Processes of their own for command lines, forked from one that has already imported TensorFlow.

Tests about the process itself (a command line SIGKILLed at a point and rerun, tf.distribute
workers) need a process of their own, but not a fresh Python start: importing TensorFlow, tf_keras
and the package costs about 3.9 CPU-seconds a process at ~340 GFLOP/s (`python -c "import
tensorflow, tf_keras; import omg_cnnrnn.training"`), more than a tiny run itself. `start` forks each
command from a `multiprocessing` forkserver that imported them once per pytest worker (PRELOAD)
and never ran an op: TensorFlow's runtime (its thread pools, the logical devices a tf.distribute
test configures) starts in the child, at its first op, as in a fresh process. The child runs the
command as `python -m <module> <args>` (or `python <script> <args>`) would, with its own argv,
environment, working directory and stdout/stderr (a file, read by `Run.output`), and is a real
process: its own pid, SIGKILL, an exit status.

What it leaves out is the interpreter's own start (site, the imports above), which the tests that
use it are not about; `tests/test_export.py` still starts a fresh interpreter to show a SavedModel
loads without the package, and the table script test runs the script as a user would.
"""

import multiprocessing
import os
import runpy
import signal
import sys
import tempfile
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

# Imported once, in the forkserver: what the command lines the tests start import first.
PRELOAD = ("tensorflow", "tf_keras", "omg_cnnrnn.training", "omg_cnnrnn.evaluation", "omg_cnnrnn.serving",
           "omg_cnnrnn.workdir", "data_prep.common")

_CONTEXT = None


def _context():
  global _CONTEXT
  if _CONTEXT is None:
    for path in (REPO, TESTS):  # the forkserver's sys.path is this process's: the checkout first
      if path not in sys.path:
        sys.path.insert(0, path)
    _CONTEXT = multiprocessing.get_context("forkserver")
    _CONTEXT.set_forkserver_preload(list(PRELOAD))
  return _CONTEXT


def _child(cmd, env, cwd, output):
  """In the forked process: the command's stdout and stderr to `output`, its environment, argv, main."""
  fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)
  os.environ.clear()
  os.environ.update(env)
  os.chdir(cwd)
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  # runpy warns when the module was imported before (the forkserver preloads the package): harmless, as
  # `python -m` gives the command line its own __main__ copy too.
  warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
  if cmd[1] == "-m":
    sys.argv = [cmd[2], *cmd[3:]]
    runpy.run_module(cmd[2], run_name="__main__", alter_sys=True)
  else:
    sys.argv = list(cmd[1:])
    sys.path.insert(0, os.path.dirname(os.path.abspath(cmd[1])))  # as `python script.py` does
    runpy.run_path(cmd[1], run_name="__main__")


class Run:
  """A started command: `pid`, `poll()`, `wait()`, `send_signal()`, `returncode` (as subprocess.Popen's),
  and `output()`, what it wrote to stdout and stderr."""

  def __init__(self, cmd, env=None, cwd=REPO):
    if cmd[0] != sys.executable:
      raise ValueError(f"not a Python command line: {cmd}")
    self.args = list(cmd)
    handle, self._output = tempfile.mkstemp(prefix="prelaunch-", suffix=".log")
    os.close(handle)
    self._process = _context().Process(
        target=_child, args=(self.args, dict(os.environ if env is None else env), cwd, self._output))
    self._process.start()
    self.pid = self._process.pid

  @property
  def returncode(self):
    return self._process.exitcode

  def poll(self):
    return self._process.exitcode

  def wait(self, timeout=None):
    self._process.join(timeout)
    if self._process.exitcode is None:
      raise TimeoutError(f"{self.args} still running after {timeout} s")
    return self._process.exitcode

  def send_signal(self, sig):
    if self._process.exitcode is None:
      os.kill(self.pid, sig)

  def kill(self):
    self.send_signal(signal.SIGKILL)

  def output(self) -> str:
    with open(self._output, errors="replace") as f:
      return f.read()

  def __del__(self):
    try:
      os.unlink(self._output)
    except (OSError, AttributeError):
      pass


def start(cmd, env=None, cwd=REPO) -> Run:
  """Starts `cmd` (`[sys.executable, "-m", module, *args]` or `[sys.executable, script, *args]`) forked."""
  return Run(cmd, env=env, cwd=cwd)


def run(cmd, env=None, cwd=REPO, timeout=None) -> Run:
  """`start` and wait for it to end (a TimeoutError, the process killed, after `timeout` seconds)."""
  proc = start(cmd, env=env, cwd=cwd)
  t0 = time.time()
  try:
    proc.wait(timeout)
  except TimeoutError:
    proc.kill()
    proc.wait(10)
    raise TimeoutError(f"{cmd} killed after {time.time() - t0:.0f} s:\n{proc.output()[-3000:]}")
  return proc
