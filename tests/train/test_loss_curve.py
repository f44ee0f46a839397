"""The loss curve: smoothed + raw loss, validation loss when logged, learning rate; wandb offline."""

from __future__ import annotations

import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gr00t.train.logging_callbacks import run_info
from gr00t.train.loss_curve import ema, ema_weight, loss_curve_figure, read_metrics, series, write_loss_curve

sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic_metrics(steps: int = 300, val_every: int | None = 50, seed: int = 0) -> list[dict]:
    """What a run writes to metrics.jsonl: noisy decaying loss, warmup + cosine lr, sparse val_loss."""
    rng = np.random.default_rng(seed)
    records = []
    for step in range(1, steps + 1):
        lr = 1e-4 * min(1.0, step / 30) * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = 1.2 * math.exp(-step / 60) + 0.05 + abs(rng.normal(0, 0.04))
        records.append({"step": step, "loss": loss, "learning_rate": lr, "grad_norm": 1.0, "epoch": 0.1})
        if val_every and step % val_every == 0:
            records.append({"step": step, "val_loss": 1.2 * math.exp(-step / 60) + 0.08})
    return records


def _lines(fig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
        for ax in fig.axes
        for line in ax.get_lines()
    }


def test_ema_is_debiased_and_weight_grows_with_points():
    assert ema_weight(19) == 0.0 and ema_weight(31) == 0.5 and ema_weight(500) == pytest.approx(0.9)
    assert ema_weight(10_000) == 0.98
    np.testing.assert_allclose(ema(np.full(20, 3.0), 0.9), 3.0)  # a constant stays put from the first point
    x = np.array([1.0, 0.0, 0.0])
    w = 0.5
    expected = [1.0, (w * 0.5) / (1 - w**2), (w * w * 0.5) / (1 - w**3)]
    np.testing.assert_allclose(ema(x, w), expected)
    np.testing.assert_allclose(ema(x, 0.0), x)


def test_curve_without_validation_loss(tmp_path):
    records = synthetic_metrics(val_every=None)
    fig = loss_curve_figure(records, "run", "recipe demo")
    lines = _lines(fig)
    assert set(lines) == {"training loss (raw)", "training loss (EMA 0.83)", "learning rate"}
    steps, raw = lines["training loss (raw)"]
    np.testing.assert_array_equal(steps, np.arange(1, 301))
    np.testing.assert_allclose(raw, [r["loss"] for r in records])
    smooth = lines["training loss (EMA 0.83)"][1]
    assert np.std(np.diff(smooth)) < 0.5 * np.std(np.diff(raw))  # smoother than the raw loss
    lr_axis = [ax for ax in fig.axes if ax.get_ylabel() == "learning rate"]
    assert len(lr_axis) == 1 and lr_axis[0] is not fig.axes[0]  # on its own y axis
    assert fig.axes[0].get_yscale() == "log"  # 1.3 -> 0.05 spans more than 10x
    path = write_loss_curve(records, tmp_path / "loss_curve.png", "run", "recipe demo")
    assert Image.open(path).size == (800, 450)
    assert [p.name for p in tmp_path.iterdir()] == ["loss_curve.png"]


def test_curve_with_validation_loss_from_metrics_file(tmp_path):
    records = synthetic_metrics(val_every=50)
    metrics = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in records)
    # a resumed run logs steps 291-300 again (the later values win) and a killed writer left half a line
    text += "".join(
        json.dumps({**r, "loss": 0.5}) + "\n" for r in records if r.get("step", 0) > 290 and "loss" in r
    )
    metrics.write_text(text + '{"step": 301, "lo')
    read = read_metrics(metrics)
    steps, loss = series(read, "loss")
    assert len(steps) == 300 and np.all(loss[-10:] == 0.5) and np.all(loss[:-10] != 0.5)
    lines = _lines(loss_curve_figure(read))
    val_steps, val = lines["validation loss"]
    np.testing.assert_array_equal(val_steps, [50, 100, 150, 200, 250, 300])
    np.testing.assert_allclose(val, [r["val_loss"] for r in records if "val_loss" in r])
    # HF's evaluation key is understood too
    hf = [{k.replace("val_loss", "eval_loss"): v for k, v in r.items()} for r in records]
    np.testing.assert_array_equal(_lines(loss_curve_figure(hf))["validation loss"][0], val_steps)


def test_short_runs_and_empty_logs(tmp_path):
    fig = loss_curve_figure([{"step": 1, "loss": 1.0, "learning_rate": 0.0}, {"step": 2, "loss": 0.9}])
    assert set(_lines(fig)) == {"training loss", "learning rate"}
    assert loss_curve_figure([{"step": 1, "learning_rate": 1e-4}, {"train_loss": 1.0}]) is None
    assert write_loss_curve([], tmp_path / "x.png") is None and not list(tmp_path.iterdir())


def test_run_info_from_experiment_config():
    cfg = {
        "recipe": "finetune_n16",
        "data": "/data/my_robot",
        "base": "nvidia/GR00T-N1.6-3B",
        "embodiment": {"tag": "new_embodiment", "action": {}},
        "model": {"name": "n16"},
        "trainer": {"max_steps": 3},
    }
    assert run_info(cfg) == {
        "recipe": "finetune_n16",
        "dataset": "/data/my_robot",
        "embodiment": "new_embodiment",
        "base": "nvidia/GR00T-N1.6-3B",
        "model": "n16",
    }
    assert (
        run_info({"recipe": "demo", "data": "demo", "demo_dir": "demo_data"})["dataset"] == "demo (demo_data)"
    )
    assert run_info("recipe: demo\nembodiment: g1\n") == {"recipe": "demo", "embodiment": "g1"}
    assert run_info(None) == {} and run_info(": not yaml: [") == {}


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline wandb run file (a LevelDB-style log: 32 KiB blocks of
    chunks, each with a 7-byte header crc32/length/type after the file's 7-byte W&B header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", path
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0 or pos + 7 + length > len(raw):  # padding, or a chunk still being written
            break
        buf += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


@pytest.mark.slow
def test_training_writes_curve_and_logs_it_to_wandb_offline(train_data: Path, tmp_path: Path, monkeypatch):
    from _pipeline import build_pipeline

    from gr00t.train.trainer import TrainingSettings, run_training

    for key in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_NAME"):
        monkeypatch.delenv(key, raising=False)
    model, dataset, collator, processor, stats = build_pipeline(train_data)
    settings = TrainingSettings(
        max_steps=3,
        per_device_batch_size=2,
        save_steps=3,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="offline",
        progress_bar=False,
        seed=3,
    )
    config = {"recipe": "demo", "data": str(train_data), "embodiment": {"tag": "new_embodiment"}}
    run_training(model, dataset, collator, settings, tmp_path, processor=processor, experiment_config=config)

    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps, _ = series(read_metrics(tmp_path / "metrics.jsonl"), "loss")
    assert list(steps) == [1, 2, 3]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (history_file,) = run.glob("run-*.wandb")
    # wandb's service process writes the file behind the run; it is complete once it holds the exit record
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(history_file)):
        assert time.monotonic() < deadline, f"{history_file} never got its exit record"
        time.sleep(0.5)
    config_items = {
        item.key: json.loads(item.value_json)
        for record in wandb_records(history_file)
        if record.WhichOneof("record_type") in ("config", "run")
        for item in (record.config.update if record.HasField("config") else record.run.config.update)
    }
    assert config_items["dataset"] == str(train_data) and config_items["embodiment"] == "new_embodiment"
    assert config_items["recipe"] == "demo"
    assert "learning_rate" in config_items  # HF's own run config is still there
    images = list((run / "files" / "media" / "images").glob("loss_curve_*.png"))
    assert len(images) == 1 and Image.open(images[0]).size == Image.open(tmp_path / "loss_curve.png").size


def test_second_run_in_one_process_gets_its_own_wandb_folder(tmp_path: Path, monkeypatch) -> None:
    """wandb reads WANDB_DIR once per process; configure_wandb makes it read the new run's folder."""
    import wandb

    from gr00t.train.logging_callbacks import configure_wandb

    for key in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_NAME"):
        monkeypatch.delenv(key, raising=False)
    for name in ("first", "second"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        configure_wandb(run_dir, "offline", "gr00t-test", None)
        settings = wandb.setup().settings
        assert Path(settings.root_dir) == run_dir
        assert settings.run_id == (run_dir / "wandb_run_id").read_text().strip()
    wandb.teardown()
