"""The project's one way to write a file: a temporary file beside it, fsync, rename.

`atomic_output(path)` yields a temporary path for writers that want a path
(`DataFrame.to_csv`, `np.savetxt`, `cv2.VideoWriter`, `savefig`); `write_atomic(path, data)`
writes bytes or text already in memory. Either way a reader, a concurrent writer of the same
path or a crash sees the old file or the new one, never half of one: the temporary file has a
unique name beside the target (same file system, so the rename is atomic), it is flushed to
disk before the rename (else a crash can leave the new name on an empty file), it gets the
permissions of any new file (the umask's, not mkstemp's owner-only ones), the folder is
created, and on any error the temporary file is removed and the target keeps its old content.

No TensorFlow here: `data_prep`, `metrics`, `postprocess` and the report scripts write
through it without importing it (`omg_cnnrnn.data.records` re-exports it for the prepared
records).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from typing import Iterator


@functools.cache
def _file_mode() -> int:
  """The mode of a new file under this process's umask (0o666 & ~umask).

  Read from /proc (Linux) so nothing process-wide changes; elsewhere the umask is set and
  restored at once, on the first write rather than at import.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return 0o666 & ~int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


def temporary_beside(path: str, tag: str = "", suffix: str = ".tmp") -> str:
  """A fresh `.<name><tag>.<random><suffix>` beside `path` (creates the folder; the mode of any output).

  `suffix` is the temporary file's extension, for writers that choose a format by it
  (`cv2.VideoWriter`: ".mp4"; `savefig`: ".png").
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{tag}.", suffix=suffix, dir=directory)
  os.close(fd)
  os.chmod(tmp, _file_mode())
  return tmp


def commit(tmp: str, path: str) -> None:
  """fsync `tmp`, then rename it over `path`."""
  fd = os.open(tmp, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
  os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ".tmp") -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it becomes `path` (fsync, rename).

  On any error (or a kill, until the rename) `path` keeps its old content and the temporary
  file is removed. `suffix`: the temporary file's extension (`temporary_beside`).
  """
  tmp = temporary_beside(path, suffix=suffix)
  try:
    yield tmp
    commit(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_atomic(path: str, data: bytes | str) -> None:
  """Writes `data` (bytes, or text as UTF-8) to `path` atomically (`atomic_output`)."""
  with atomic_output(path) as tmp, open(tmp, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
