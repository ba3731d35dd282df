"""tests/cli_runner.py, the in-process command-line runner the command-line tests use: what a subprocess
would give (exit status, stdout, stderr), and the process's absl flags left as they were."""

import sys

from absl import flags

import cli_runner


def test_a_main_runs_twice_and_leaves_the_flags_as_they_were():
  # A first run in a process imports TensorFlow, whose modules define flags of their own on import
  # (kept, as an import keeps them), and absl's --help flags: the flags to compare are those after it.
  cli_runner.run("omg_cnnrnn.experiments", ["--get=testing", "--field=name"])
  names, parsed, argv = sorted(flags.FLAGS), flags.FLAGS.is_parsed(), list(sys.argv)
  for _ in range(2):  # the module defines its flags again: the first run's were removed
    done = cli_runner.run("omg_cnnrnn.experiments", ["--get=testing", "--field=name"])
    assert (done.returncode, done.stdout) == (0, "testing\n"), done.stderr
    assert sorted(flags.FLAGS) == names and flags.FLAGS.is_parsed() == parsed and sys.argv == argv
  assert done.args == [sys.executable, "-m", "omg_cnnrnn.experiments", "--get=testing", "--field=name"]


def test_exit_statuses_and_messages_are_a_subprocess_s():
  bad = cli_runner.run("omg_cnnrnn.experiments", ["--no_such_flag"])
  assert bad.returncode == 1 and "FATAL Flags parsing error" in bad.stderr and bad.stdout == ""
  assert cli_runner._exit_status(None, sys.stderr) == 0 and cli_runner._exit_status(3, sys.stderr) == 3


def test_a_system_exit_message_goes_to_stderr_with_status_1(capsys):
  assert cli_runner._exit_status("omg-predict: error: no", sys.stderr) == 1
  assert capsys.readouterr().err == "omg-predict: error: no\n"
