"""Face pipeline: detection and crops of a real face, tracking, missing frames, bad videos."""

import os

import cv2
import numpy as np
import pytest

from data_prep import synthetic_faces
from omg_cnnrnn import faces


def _write_mp4(path, frames, fps=10.0):
  h, w = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
  for f in frames:
    writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  writer.release()
  return str(path)


@pytest.fixture(scope="module")
def look():
  return synthetic_faces.Appearance.random(np.random.default_rng(0), 320, 240)


@pytest.mark.parametrize("centre,scale", [((110, 110), 0.8), ((210, 130), 1.1), ((160, 120), 1.0)])
def test_mtcnn_finds_the_real_face_where_it_was_placed(look, centre, scale):
  frame, truth = synthetic_faces.render_frame(look, 0.0, 0.0, centre, 0.0, scale, 1.0)
  tracker = faces.FaceTracker(faces.FULL_DETECTION)
  found, detected, box, crop = tracker.update(frame)
  assert found and detected
  assert faces.box_iou(box, truth) > 0.7, (box, truth)
  assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
  # The crop is the face: its centre pixel matches the frame at the box centre.
  cx, cy = ((box[:2] + box[2:]) / 2).astype(int)
  assert np.abs(crop[48, 48].astype(int) - frame[cy, cx].astype(int)).max() < 40


class ScriptedDetector:
  """Returns, call after call, the boxes of a script (None: nothing found)."""

  def __init__(self, script):
    self.script = list(script)
    self.calls = 0

  def detect(self, frame):
    item = self.script[self.calls]
    self.calls += 1
    return [] if item is None else [(np.array(b, float), s) for b, s in item]


def _blank(n=1):
  return [np.full((120, 160, 3), 100, np.uint8) for _ in range(n)]


def test_missing_detections_are_held_then_marked_missing():
  face = [([40, 30, 80, 80], 0.99)]
  config = faces.FaceConfig(detect_every=1, detection_scale=1.0, max_hold_frames=2)
  tracker = faces.FaceTracker(config, ScriptedDetector([face, None, None, None, None, face]))
  out = [tracker.update(f) for f in _blank(6)]
  found = [o[0] for o in out]
  detected = [o[1] for o in out]
  assert found == [True, True, True, False, False, True]
  assert detected == [True, False, False, False, False, True]
  assert np.isnan(out[3][2]).all() and (out[3][3] == 0).all()
  np.testing.assert_allclose(out[1][2], [40, 30, 80, 80])  # held box


def test_tracker_keeps_its_target_when_a_larger_face_appears():
  target = ([40, 30, 80, 80], 0.95)
  larger = ([100, 10, 158, 100], 0.999)
  config = faces.FaceConfig(detect_every=1, detection_scale=1.0)
  tracker = faces.FaceTracker(config, ScriptedDetector([[target], [larger, ([42, 31, 82, 81], 0.9)], [larger]]))
  out = [tracker.update(f) for f in _blank(3)]
  np.testing.assert_allclose(out[1][2], [42, 31, 82, 81])
  # Only the other face is found: not a continuation of the track, so the box is held.
  assert out[2][0] and not out[2][1]
  np.testing.assert_allclose(out[2][2], [42, 31, 82, 81])


def test_crop_at_the_border_is_padded():
  frame = np.full((50, 50, 3), 200, np.uint8)
  crop = faces.crop_face(frame, [-10, -10, 20, 20], crop_size=32, margin=0.0)
  assert crop.shape == (32, 32, 3)
  assert (crop[0, 0] == 0).all() and (crop[-1, -1] == 200).all()


def test_process_video_frame_count_timestamps_and_cutting(tmp_path, look):
  frames = [synthetic_faces.render_frame(look, 0.0, 0.0, (160 + 3 * i, 120), 0, 1.0, 1.0)[0] for i in range(12)]
  path = _write_mp4(tmp_path / "v.mp4", frames, fps=10.0)
  track = faces.process_video(path, faces.FaceConfig(detect_every=4))
  assert len(track.face_found) == 12 and track.crops.shape == (12, 96, 96, 3)
  np.testing.assert_allclose(track.timestamps, np.arange(12) / 10.0, atol=1e-6)
  assert track.face_found.all() and track.detected[0] and track.frame_size == (320, 240)
  cut = faces.process_video(path, start=0.3, end=0.8)
  assert len(cut.face_found) == 5
  np.testing.assert_allclose(cut.timestamps, [0.3, 0.4, 0.5, 0.6, 0.7], atol=1e-6)


def test_bad_videos_raise_video_error_naming_the_file(tmp_path, look):
  cases = {}
  cases["missing"] = str(tmp_path / "nope.mp4")
  (tmp_path / "empty.mp4").write_bytes(b"")
  cases["zero-byte"] = str(tmp_path / "empty.mp4")
  (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
  cases["not a video"] = str(tmp_path / "text.mp4")
  good = _write_mp4(tmp_path / "good.mp4", [synthetic_faces.render_frame(look, 0, 0, (160, 120), 0, 1, 1)[0]] * 5)
  (tmp_path / "truncated.mp4").write_bytes(open(good, "rb").read()[:200])
  cases["truncated"] = str(tmp_path / "truncated.mp4")
  os.makedirs(tmp_path / "dir.mp4")
  cases["directory"] = str(tmp_path / "dir.mp4")
  for name, path in cases.items():
    with pytest.raises(faces.VideoError) as err:
      faces.process_video(path)
    assert path in str(err.value), name
  with pytest.raises(faces.VideoError, match="end 0.1 <= start 0.2"):
    faces.process_video(good, start=0.2, end=0.1)
  with pytest.raises(faces.VideoError, match="past the end"):
    faces.process_video(good, start=30.0, end=31.0)
