"""A detector factory for data-prep worker tests: its process dies on demand (spawned workers import it).

`CRASH_DETECTOR_ONCE=<file>`: the first detection in any worker while the file exists deletes it
and kills that process. `CRASH_DETECTOR_ALWAYS=1`: every detection kills its process. Otherwise
the package's default detector.
"""

import os

from omg_cnnrnn import faces


class _Dying:
  def __init__(self, inner):
    self.inner = inner

  def detect(self, frame_rgb):
    flag = os.environ.get("CRASH_DETECTOR_ONCE", "")
    if flag and os.path.exists(flag):
      os.remove(flag)
      os._exit(1)
    if os.environ.get("CRASH_DETECTOR_ALWAYS"):
      os._exit(1)
    return self.inner.detect(frame_rgb)


def factory(face_config):
  return _Dying(faces.default_detector(face_config))
