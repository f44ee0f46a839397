"""Bad datasets get clear errors naming the file / episode / key, and never hang."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gr00t.data import video
from gr00t.data.demo import _write_code
from gr00t.data.lerobot import LeRobotFormatError, NonFiniteValueError, open_lerobot_dataset
from gr00t.data.modality import ModalityError, load_modality

FRONT = "observation.images.front"


@pytest.fixture
def v3(demo_dataset_v3, tmp_path):
    root = tmp_path / "v3"
    shutil.copytree(demo_dataset_v3, root)
    return root


@pytest.fixture
def v21(demo_dataset_v21, tmp_path):
    root = tmp_path / "v21"
    shutil.copytree(demo_dataset_v21, root)
    return root


def _edit_info(root, **changes):
    info = json.loads((root / "meta/info.json").read_text())
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    (root / "meta/info.json").write_text(json.dumps(info))


# ----------------------------------------------------------------------------- meta files
def test_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_lerobot_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/meta/info.json is missing.*codebase_version"):
        open_lerobot_dataset(tmp_path / "empty")


def test_info_json_broken(v3):
    (v3 / "meta/info.json").write_text("{not json")
    with pytest.raises(LeRobotFormatError, match=r"meta/info.json is not valid JSON"):
        open_lerobot_dataset(v3)


@pytest.mark.parametrize("version", ["v1.6", "3.0", None])
def test_unknown_codebase_version(v3, version):
    _edit_info(v3, codebase_version=version)
    with pytest.raises(
        LeRobotFormatError,
        match=r"codebase_version .* is not supported; supported: \['v2.0', 'v2.1', 'v3.0'\]",
    ):
        open_lerobot_dataset(v3)


def test_required_info_key_missing(v21):
    _edit_info(v21, fps=None)
    with pytest.raises(LeRobotFormatError, match=r"info.json: required key 'fps' is missing"):
        open_lerobot_dataset(v21)


@pytest.mark.parametrize("fixture", ["v3", "v21"])
def test_total_episodes_disagrees(fixture, request):
    root = request.getfixturevalue(fixture)
    _edit_info(root, total_episodes=7)
    with pytest.raises(LeRobotFormatError, match=r"total_episodes=7, but .*meta/episodes.* lists 6 episodes"):
        open_lerobot_dataset(root)


def test_total_frames_disagrees_warns(v21):
    _edit_info(v21, total_frames=999)
    with pytest.warns(UserWarning, match=r"total_frames=999, but the episode lengths .* add up to 360"):
        reader = open_lerobot_dataset(v21)
    assert reader.total_frames == 360


def test_episode_metadata_missing(v3, v21):
    shutil.rmtree(v3 / "meta/episodes")
    with pytest.raises(FileNotFoundError, match=r"meta/episodes: no episode metadata files"):
        open_lerobot_dataset(v3)
    (v21 / "meta/episodes.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"meta/episodes.jsonl is missing"):
        open_lerobot_dataset(v21)


def test_tasks_missing(v3, v21):
    (v3 / "meta/tasks.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"meta/tasks.parquet is missing"):
        open_lerobot_dataset(v3)
    (v21 / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "a"}\n{"task_index": 1 "task": "b"}\n')
    with pytest.raises(LeRobotFormatError, match=r"tasks.jsonl, line 2: not valid JSON"):
        open_lerobot_dataset(v21)


def test_v3_episode_metadata_column_missing(v3):
    path = v3 / "meta/episodes/chunk-000/file-000.parquet"
    pd.read_parquet(path).drop(columns=[f"videos/{FRONT}/from_timestamp"]).to_parquet(path, index=False)
    with pytest.raises(
        LeRobotFormatError, match=rf"required column\(s\) \['videos/{FRONT}/from_timestamp'\] are missing"
    ):
        open_lerobot_dataset(v3)


def test_v3_index_range_contradicts_length(v3):
    path = v3 / "meta/episodes/chunk-000/file-000.parquet"
    episodes = pd.read_parquet(path)
    episodes.loc[2, "length"] = 61
    episodes.to_parquet(path, index=False)
    with pytest.raises(
        LeRobotFormatError, match=r"episode 2: dataset_to_index - dataset_from_index = 60 but length = 61"
    ):
        open_lerobot_dataset(v3)


def test_length_disagrees_with_parquet_rows(v3, v21):
    path = v3 / "meta/episodes/chunk-000/file-000.parquet"
    episodes = pd.read_parquet(path)
    episodes.loc[1, "length"] = 59
    episodes.loc[1, "dataset_to_index"] = 119
    episodes.to_parquet(path, index=False)
    _edit_info(v3, total_frames=359)
    reader = open_lerobot_dataset(v3)
    with pytest.raises(
        LeRobotFormatError, match=r"file-000.parquet: episode 1 has 60 rows, but .* says length 59"
    ):
        reader.episode_data(1)
    lines = [json.loads(x) for x in (v21 / "meta/episodes.jsonl").read_text().splitlines()]
    lines[3]["length"] = 70
    (v21 / "meta/episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    _edit_info(v21, total_frames=370)
    with pytest.raises(
        LeRobotFormatError, match=r"episode_000003.parquet: episode 3 has 60 rows, but .* says length 70"
    ):
        open_lerobot_dataset(v21).episode_data(3, ["action"])


def test_data_file_missing(v3, v21):
    (v3 / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"episode 0: data file .*data/chunk-000/file-000.parquet is missing"
    ):
        open_lerobot_dataset(v3)
    (v21 / "data/chunk-000/episode_000004.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"episode 4: data file .*episode_000004.parquet is missing"):
        open_lerobot_dataset(v21)
    reader = open_lerobot_dataset(v21, check_files=False)  # lazily: the read names the file
    with pytest.raises(FileNotFoundError, match=r"episode_000004.parquet is missing"):
        reader.episode_data(4)


def test_video_file_missing(v21):
    (v21 / f"videos/chunk-000/{FRONT}/episode_000002.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=rf"episode 2: {FRONT} file .*episode_000002.mp4 is missing"):
        open_lerobot_dataset(v21)
    reader = open_lerobot_dataset(v21, check_files=False)
    with pytest.raises(
        video.VideoDecodeError, match=r"video file not found: .*episode_000002.mp4 \(episode 2"
    ):
        reader.decode_frames(2, FRONT, [0])


def test_unreadable_parquet(v21):
    (v21 / "data/chunk-000/episode_000001.parquet").write_bytes(b"PAR1 this is not parquet")
    reader = open_lerobot_dataset(v21)
    with pytest.raises(LeRobotFormatError, match=r"episode_000001.parquet: unreadable parquet file"):
        reader.episode_data(1)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("column, value", [("observation.state", np.nan), ("action", np.inf)])
def test_non_finite_values_named(v21, column, value):
    path = v21 / "data/chunk-000/episode_000003.parquet"
    table = pq.read_table(path)
    values = np.stack(table.column(column).to_pylist()).astype(np.float32)
    values[17, 5] = value
    flat = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 7)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, flat), path)
    reader = open_lerobot_dataset(v21)
    reader.episode_data(3, ["timestamp"])  # other columns are still readable
    with pytest.raises(
        NonFiniteValueError,
        match=rf"episode_000003.parquet: episode 3, column '{column}' holds {value} at frame 17, dimension 5",
    ):
        reader.episode_data(3, [column])


def test_v3_non_finite_value_names_the_episode(v3):
    path = v3 / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    values = np.stack(table.column("action").to_pylist()).astype(np.float32)
    values[245, 0] = np.nan  # episode 4, frame 5
    flat = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 7)
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", flat), path)
    reader = open_lerobot_dataset(v3)
    reader.episode_data(3, ["action"])
    with pytest.raises(
        NonFiniteValueError, match=r"episode 4, column 'action' holds nan at frame 5, dimension 0"
    ):
        reader.episode_data(4, ["action"])


def test_modality_slice_outside_column(v3):
    modality = json.loads((v3 / "meta/modality.json").read_text())
    modality["action"]["gripper"] = {"start": 6, "end": 8}
    (v3 / "meta/modality.json").write_text(json.dumps(modality))
    with pytest.raises(
        ModalityError, match=r"action.gripper slice \[6, 8\) is outside column 'action', which has width 7"
    ):
        load_modality(v3)


def test_modality_unknown_keys(v3):
    modality = json.loads((v3 / "meta/modality.json").read_text())
    modality["video"]["top"] = {"original_key": "observation.images.top"}
    (v3 / "meta/modality.json").write_text(json.dumps(modality))
    with pytest.raises(
        ModalityError, match=r"video.top maps to 'observation.images.top', which is not a video feature"
    ):
        load_modality(v3)
    modality["video"].pop("top")
    modality["state"]["base"] = {"original_key": "observation.state.base", "start": 0, "end": 2}
    (v3 / "meta/modality.json").write_text(json.dumps(modality))
    with pytest.raises(ModalityError, match=r"state.base reads column 'observation.state.base'"):
        load_modality(v3)


def test_modality_missing_explains_how_to_write_one(v3):
    (v3 / "meta/modality.json").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_modality(v3)
    message = str(info.value)
    assert "meta/modality.json is missing" in message
    assert '"original_key": "observation.images.front"' in message  # the example
    assert "write_default_modality" in message


# ----------------------------------------------------------------------------- videos
def _write_faststart(path, n=40):
    """An mp4 with its index (moov) before the frames, so a truncated copy still opens."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "2"}
        for i in range(n):
            img = np.full((48, 64, 3), 120, np.uint8)
            _write_code(img, i, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["torchcodec", "pyav", "auto"])
def test_truncated_video_without_index(v21, backend):
    path = v21 / f"videos/chunk-000/{FRONT}/episode_000001.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    video.clear_decoder_cache()
    reader = open_lerobot_dataset(v21)
    with pytest.raises(
        video.VideoDecodeError, match=r"episode_000001.mp4 \(episode 1, observation.images.front\)"
    ):
        reader.decode_frames(1, FRONT, [0, 30], backend=backend)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_truncated_video_with_index(tmp_path, backend):
    path = tmp_path / "fast.mp4"
    _write_faststart(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    video.clear_decoder_cache()
    with pytest.raises(video.VideoDecodeError, match=r"fast.mp4 \(episode 9, cam\)"):
        video.decode_frames(path, [0.0, 3.9], backend=backend, context="episode 9, cam")
    with pytest.raises(video.VideoDecodeError, match=r"fast.mp4 \(episode 9, cam\)"):
        video.decode_segment(path, 3.0, 10, backend=backend, context="episode 9, cam")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_garbage_video(tmp_path, backend):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(
        video.VideoDecodeError, match=rf"cannot open video .*junk.mp4 \(episode 0, k\) with {backend}"
    ):
        video.decode_frames(path, [0.0], backend=backend, context="episode 0, k")


def test_bad_video_requests(demo_dataset_v3):
    reader = open_lerobot_dataset(demo_dataset_v3)
    with pytest.raises(KeyError, match=r"no video feature 'observation.images.top'"):
        reader.decode_frames(0, "observation.images.top", [0])
    with pytest.raises(IndexError, match=r"episode 0 has 60 frames; frame indices \[60\]"):
        reader.decode_frames(0, FRONT, [60])
    with pytest.raises(IndexError, match=r"segment \[50, 70\) outside \[0, 60\)"):
        reader.decode_segment(0, FRONT, 50, 70)
    with pytest.raises(ValueError, match="non-finite timestamps"):
        video.decode_frames(reader.video_location(0, FRONT)[0], [float("nan")])


def test_empty_dataset_says_it_has_no_episodes(v21):
    from gr00t.data.dataset import Gr00tDataset

    (v21 / "meta" / "episodes.jsonl").write_text("")
    (v21 / "meta" / "episodes_stats.jsonl").write_text("")
    _edit_info(v21, total_episodes=0, total_frames=0, splits={})
    with pytest.raises(ValueError, match=r"has 0 episodes") as err:
        Gr00tDataset(v21, "new_embodiment")
    assert str(v21) in str(err.value) and "long enough" not in str(err.value)
    from gr00t.data.stats import StatsError, compute_stats

    with pytest.raises(StatsError, match=r"has 0 episodes"):  # what gr00t-finetune meets first
        compute_stats(v21, "new_embodiment")


def test_too_short_episodes_name_the_longest(v21):
    from gr00t.data.dataset import Gr00tDataset
    from gr00t.data.embodiment import load_embodiment

    data = load_embodiment("new_embodiment").to_dict()
    data["action"]["horizon"] = 100
    data["action"]["delta_indices"] = list(range(100))
    with pytest.raises(
        ValueError, match=r"none of its 6 episodes is long enough .* longest episode 60 frames"
    ):
        Gr00tDataset(v21, data)
