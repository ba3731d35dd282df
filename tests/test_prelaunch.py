"""tests/prelaunch.py: forked command lines get their own argv, environment, directory, stdio and status."""

import os
import signal
import subprocess
import sys
import time

import pytest

import prelaunch

# A forkserver start imports TensorFlow (seconds); the SIGKILL, tf.distribute and table script tests use it.
pytestmark = pytest.mark.slow

SCRIPT = """
import os, sys, time
print("argv", sys.argv[1:], "env", os.environ.get("PRELAUNCH_TEST"), "cwd", os.getcwd(), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1] == "sleep":
  time.sleep(60)
sys.exit(sys.argv[1] if sys.argv[1] == "message" else int(sys.argv[1]))
"""


@pytest.fixture
def script(tmp_path):
  path = tmp_path / "script.py"
  path.write_text(SCRIPT)
  return str(path)


def test_a_forked_run_has_its_own_argv_environment_directory_output_and_status(script, tmp_path):
  env = {**os.environ, "PRELAUNCH_TEST": "yes"}
  done = prelaunch.run([sys.executable, script, "3", "b c"], env=env, cwd=str(tmp_path), timeout=120)
  assert done.returncode == 3
  assert done.output().splitlines() == [f"argv ['3', 'b c'] env yes cwd {tmp_path}", "to stderr"]
  assert "PRELAUNCH_TEST" not in os.environ  # this process's environment is untouched

  message = prelaunch.run([sys.executable, script, "message"], timeout=120)
  assert message.returncode == 1 and message.output().splitlines()[-1] == "message"
  field = prelaunch.run([sys.executable, "-m", "omg_cnnrnn.experiments", "--get=testing", "--field=data.image_size"],
                        timeout=120)
  assert (field.returncode, field.output().split()[-1]) == (0, "32")

  sleeping = prelaunch.start([sys.executable, script, "sleep"])
  deadline = time.time() + 120
  while "argv" not in sleeping.output() and time.time() < deadline:
    time.sleep(0.01)
  assert sleeping.poll() is None
  sleeping.send_signal(signal.SIGKILL)
  assert sleeping.wait(30) == -signal.SIGKILL
  with pytest.raises(ValueError, match="not a Python command line"):
    prelaunch.start(["bash", "-c", "true"])


def test_the_python_stand_in_passes_argv_environment_directory_stdio_and_status(script, tmp_path):
  env = {**os.environ, "PRELAUNCH_TEST": "yes"}
  with prelaunch.python_stand_in(tmp_path) as python:
    out = subprocess.run([python, script, "0", "b c"], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"argv ['0', 'b c'] env yes cwd {tmp_path}\n",
                                                        "to stderr\n")
    out = subprocess.run([python, script, "5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 5
    out = subprocess.run([python, script, "message"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.splitlines()[-1] == "message"
    # An exception: its traceback on the stand-in's stderr and status 1, as the interpreter gives.
    out = subprocess.run([python, "-m", "omg_cnnrnn.no_such_module"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "No module named omg_cnnrnn.no_such_module" in out.stderr
    # As a script's $PYTHON, in a command substitution.
    out = subprocess.run(["bash", "-c", f'echo "size=$("{python}" -m omg_cnnrnn.experiments --get=testing '
                          '--field=data.image_size)"'], capture_output=True, text=True, timeout=120)
    assert out.stdout == "size=32\n", out.stderr
