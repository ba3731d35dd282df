"""Processes of their own for command lines, forked from one that has already imported TensorFlow.

Tests about the process itself (a command line SIGKILLed at a point and rerun, tf.distribute
workers) need a process of their own, but not a fresh Python start: importing TensorFlow, tf_keras
and the package costs about 3.9 CPU-seconds a process at ~340 GFLOP/s (`python -c "import
tensorflow, tf_keras; import omg_cnnrnn.training"`): a 4-step tiny `train` run took 9.8 s spawned and
6.2 s forked. `start` forks each command from a `multiprocessing` forkserver that imported them
once per pytest worker (PRELOAD) and never ran an op: TensorFlow's runtime (its thread pools, the
logical devices a tf.distribute test configures) starts in the child, at its first op, as in a
fresh process. The child runs the
command as `python -m <module> <args>` (or `python <script> <args>`) would, with its own argv,
environment, working directory and stdout/stderr (a file, read by `Run.output`), and is a real
process: its own pid, SIGKILL, an exit status.

A script that calls Python itself (the table scripts call `$PYTHON`) gets the same through
`python_stand_in`: an executable that passes its argv, environment, working directory and stdio
to a server forked as above, which forks each command from itself and sends back its exit status.

What it leaves out is the interpreter's own start (site, the imports above), which the tests that
use it are not about; `tests/test_export.py` still starts a fresh interpreter to show a SavedModel
loads without the package.
"""

import contextlib
import json
import multiprocessing
import os
import runpy
import signal
import socket
import sys
import tempfile
import time
import traceback
import warnings

import cli_runner

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


def _redirect_output(path):
  """This process's stdout and stderr (fds 1 and 2) to the file `path`, truncated."""
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)


def _enter(env, cwd):
  """A forked command's environment, working directory and default Ctrl-C."""
  os.environ.clear()
  os.environ.update(env)
  os.chdir(cwd)
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _child(cmd, env, cwd, output):
  """In the forked process: the command's stdout and stderr to `output`, its environment, argv, main."""
  _redirect_output(output)
  _enter(env, cwd)
  _main(cmd[1:])


def _main(args):
  """`python *args` (`-m module ...` or `script ...`) in this process, which ends with it."""
  # runpy warns when the module was imported before (the forkserver preloads the package): harmless, as
  # `python -m` gives the command line its own __main__ copy too.
  warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
  if args[0].startswith("-") and args[0] != "-m":
    raise ValueError(f"only `-m module` or a script: {args}")
  if args[0] == "-m":
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
  else:
    sys.argv = list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))  # as `python script.py` does
    runpy.run_path(args[0], run_name="__main__")


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
      with contextlib.suppress(ProcessLookupError):  # it ended (and was reaped) since: as Popen.send_signal
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


# ------------------------------------------------------------------ a stand-in for `python`
_STAND_IN = """#!{python} -S
# python_stand_in (tests/prelaunch.py): runs `python ARGS` in a process forked by the server at {socket}.
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({socket!r})
request = json.dumps([sys.argv[1:], dict(os.environ), os.getcwd()]).encode()
socket.send_fds(s, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
reply = b""
while not reply.endswith(b"\\n"):
  got = s.recv(64)
  if not got:
    sys.exit("python_stand_in: the server at {socket} closed the connection")
  reply += got
status = int(reply)
if status < 0:
  os.kill(os.getpid(), -status)
sys.exit(status)
"""


def _recv_exactly(conn, n, fds=False):
  data, got_fds = b"", []
  while len(data) < n:
    if fds and not got_fds:
      chunk, got_fds, _, _ = socket.recv_fds(conn, n - len(data), 3)
    else:
      chunk = conn.recv(n - len(data))
    if not chunk:
      raise EOFError("the stand-in closed the connection")
    data += chunk
  return data, got_fds


def _command(conn) -> int:
  """One request of `_serve`: forks the command with the stand-in's stdio, waits, returns its status."""
  header, fds = _recv_exactly(conn, 8, fds=True)
  body, more = _recv_exactly(conn, int.from_bytes(header, "big"))
  fds += more
  args, env, cwd = json.loads(body)
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      for target, fd in enumerate(fds):
        os.dup2(fd, target)
      _enter(env, cwd)
      try:
        _main(args)
        code = 0
      except SystemExit as e:
        code = cli_runner._exit_status(e.code, sys.stderr)  # pylint: disable=protected-access
    except BaseException:  # noqa: BLE001 (a traceback and status 1, as the interpreter gives)
      traceback.print_exc()
    finally:
      with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
      os._exit(code)
  for fd in fds:
    os.close(fd)
  return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _serve(path):
  """The stand-ins' server: one command at a time (a script runs its commands one after another)."""
  server = socket.socket(socket.AF_UNIX)
  server.bind(path)
  server.listen(8)
  while True:
    conn, _ = server.accept()
    with conn:
      try:
        status = _command(conn)
      except Exception:  # noqa: BLE001 (a broken request: the stand-in gets status 1)
        traceback.print_exc()
        status = 1
      with contextlib.suppress(OSError):
        conn.sendall(f"{status}\n".encode())


@contextlib.contextmanager
def python_stand_in(folder):
  """Yields the path of an executable that runs `python ARGS` forked from a server holding PRELOAD.

  Give it to a script as its Python (`PYTHON=...`). The server runs while the block does.
  """
  folder = str(folder)
  path = os.path.join(folder, "python")
  address = os.path.join(tempfile.mkdtemp(prefix="prelaunch-"), "socket")  # short: AF_UNIX paths are
  handle, log = tempfile.mkstemp(prefix="prelaunch-server-", suffix=".log")  # at most 107 bytes
  os.close(handle)
  server = _context().Process(target=_serve_logged, args=(address, log), daemon=True)
  server.start()
  try:
    deadline = time.time() + 120
    while not os.path.exists(address):
      if server.exitcode is not None or time.time() > deadline:
        raise RuntimeError(f"the stand-in server did not start:\n{open(log).read()[-3000:]}")
      time.sleep(0.01)
    with open(path, "w") as f:
      f.write(_STAND_IN.format(python=sys.executable, socket=address))
    os.chmod(path, 0o755)
    yield path
  finally:
    server.kill()
    server.join(10)
    for remove, name in ((os.unlink, address), (os.rmdir, os.path.dirname(address)), (os.unlink, log)):
      with contextlib.suppress(OSError):  # the socket is missing if the server never started
        remove(name)


def _serve_logged(address, log):
  _redirect_output(log)
  _serve(address)
