"""The trained run a Table VI row post-processes (`runs.choose_base_run`), for the table scripts.

    python experiments/base_run.py --root=checkpoints --row=table6/fusion_post \
        --output=checkpoints/table6/fusion_post/base_run.json

Prints the workdir on stdout and the decision (which run, and why) on stderr; `--output`
keeps the decision as JSON. A fused base row trains two ways: the better on validation.
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "checkpoints", "Checkpoint root of the table scripts (<root>/<row>[/<way>]).")
flags.DEFINE_string("row", None, "A registered Table VI row.")
flags.DEFINE_string("split", "validation", "The split that decides between several runs.")
flags.DEFINE_string("output", "", "Where to write the decision as JSON ('' for nowhere).")
flags.mark_flag_as_required("row")


def main(argv):
  del argv
  from omg_cnnrnn import runs  # Lazy: --help stays fast.

  decision = runs.choose_base_run(FLAGS.root, FLAGS.row, FLAGS.split, output=FLAGS.output or None)
  print(f"== {decision['row']}: post-processes {decision['workdir']}, {decision['reason']}", file=sys.stderr)
  print(decision["workdir"])


if __name__ == "__main__":
  app.run(main)
