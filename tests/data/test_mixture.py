"""Mixture files, co-training ratios and the draw statistics they produce through the sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from gr00t.data.embodiment import available_embodiments, load_embodiment
from gr00t.data.mixture import (
    MixtureError,
    available_mixtures,
    co_train,
    load_mixture,
    mixture_path,
    resolve_data,
    single_dataset,
)
from gr00t.data.sampler import MixtureSampler


@pytest.fixture()
def mixdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "mixtures"
    d.mkdir()
    monkeypatch.setenv("GR00T_MIXTURES_DIR", str(d))
    monkeypatch.delenv("GR00T_DATA_ROOT", raising=False)
    return d


def _write(d: Path, name: str, data: dict) -> None:
    (d / f"{name}.yaml").write_text(yaml.safe_dump(data))


def test_shipped_mixtures_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GR00T_DATA_ROOT", "/data/root")
    assert {"demo", "pretrain_n16"} <= set(available_mixtures())
    demo = load_mixture("demo")
    assert demo.paths == [Path("/data/root/demo")] and demo.embodiments == ["new_embodiment"]
    assert demo.weights == [1.0]
    load_embodiment(demo.entries[0].embodiment)
    pre = load_mixture("pretrain_n16")
    assert abs(sum(pre.weights) - 1.0) < 1e-9
    assert all(str(p).startswith("/data/root/") for p in pre.paths)
    assert {"g1", "behavior_r1_pro", "gr1", "oxe_droid"} <= set(pre.embodiments)
    shipped = set(available_embodiments())
    for emb in pre.embodiments:  # every embodiment has a config (yam/agibot are left out, see the header)
        assert emb in shipped
    assert "Left out: the YAM bimanual and Agibot Genie-1" in mixture_path("pretrain_n16").read_text()


def test_unknown_mixture_did_you_mean() -> None:
    with pytest.raises(MixtureError, match=r"Did you mean 'pretrain_n16'"):
        load_mixture("pretrain_n61")


def test_data_root_precedence(mixdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(mixdir, "m", {"data_root": "/from/file", "datasets": [{"path": "a", "embodiment": "gr1"}]})
    assert load_mixture("m").paths == [Path("/from/file/a")]
    monkeypatch.setenv("GR00T_DATA_ROOT", "/from/env")
    assert load_mixture("m").paths == [Path("/from/env/a")]
    assert load_mixture("m", data_root="/explicit").paths == [Path("/explicit/a")]
    _write(mixdir, "abs", {"datasets": [{"path": "/abs/b", "embodiment": "gr1"}]})
    assert load_mixture("abs", data_root="/explicit").paths == [Path("/abs/b")]


def test_co_training_ratio(mixdir: Path) -> None:
    _write(
        mixdir,
        "pre",
        {
            "datasets": [
                {"path": "p1", "embodiment": "gr1", "weight": 3},
                {"path": "p2", "embodiment": "g1", "weight": 1},
            ]
        },
    )
    _write(
        mixdir,
        "ft",
        {
            "datasets": [{"path": "f1", "embodiment": "new_embodiment", "weight": 5}],
            "co_training_mixture": "pre",
            "co_training_ratio": 0.2,
        },
    )
    m = load_mixture("ft", data_root="/r")
    assert [e.name for e in m.entries] == ["f1", "p1", "p2"]
    assert np.allclose(m.weights, [0.8, 0.15, 0.05])
    assert [e.source for e in m.entries] == ["main", "pre", "pre"]
    m2 = load_mixture("ft", data_root="/r", co_training_ratio=0.5)
    assert np.allclose(m2.weights, [0.5, 0.375, 0.125])
    assert load_mixture("ft", data_root="/r", co_training_ratio=0.0).weights == [1.0]
    direct = co_train(single_dataset("/x/demo", "new_embodiment"), load_mixture("pre", data_root="/r"), 0.25)
    assert np.allclose(direct.weights, [0.75, 0.1875, 0.0625])


def test_co_training_draw_statistics(mixdir: Path) -> None:
    """Through the sampler, each dataset receives its share of draws; pretraining data is mixed evenly."""
    _write(mixdir, "pre", {"datasets": [{"path": "p", "embodiment": "gr1"}]})
    _write(
        mixdir,
        "ft",
        {
            "datasets": [{"path": "f", "embodiment": "gr1"}],
            "co_training_mixture": "pre",
            "co_training_ratio": 0.3,
        },
    )
    m = load_mixture("ft", data_root="/r")
    sampler = MixtureSampler([50, 5000], weights=m.weights, epoch_length=2000, seed=0)
    which = sampler.dataset_of(np.array(list(sampler)))
    assert np.bincount(which).tolist() == [1400, 600]
    # the pretraining share in every window of 100 consecutive draws stays near 30 %
    # (hypergeometric sd ≈ 4.6 %; > 4 sd margin)
    shares = [(which[i : i + 100] == 1).mean() for i in range(0, 2000, 100)]
    assert max(abs(s - 0.3) for s in shares) < 0.2 and abs(np.mean(shares) - 0.3) < 1e-9


def test_co_training_cycle_and_bad_ratio(mixdir: Path) -> None:
    _write(
        mixdir,
        "a",
        {
            "datasets": [{"path": "x", "embodiment": "gr1"}],
            "co_training_mixture": "b",
            "co_training_ratio": 0.1,
        },
    )
    _write(
        mixdir,
        "b",
        {
            "datasets": [{"path": "y", "embodiment": "gr1"}],
            "co_training_mixture": "a",
            "co_training_ratio": 0.1,
        },
    )
    with pytest.raises(MixtureError, match="cycle"):
        load_mixture("a")
    _write(
        mixdir,
        "c",
        {
            "datasets": [{"path": "x", "embodiment": "gr1"}],
            "co_training_mixture": "b",
            "co_training_ratio": 1.5,
        },
    )
    with pytest.raises(MixtureError, match=r"co_training_ratio.*\[0, 1\)"):
        load_mixture("c")
    _write(mixdir, "d", {"datasets": [{"path": "x", "embodiment": "gr1"}], "co_training_ratio": 0.2})
    with pytest.raises(MixtureError, match="co_training_mixture' is missing"):
        load_mixture("d")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"datasets": []}, "'datasets': expected a non-empty list"),
        ({"datasets": [{"path": "x"}]}, r"datasets\[0\]\.embodiment"),
        ({"datasets": [{"path": "x", "embodiment": "gr1", "weight": 0}]}, r"datasets\[0\]\.weight"),
        ({"datasets": [{"path": "x", "embodiment": "gr1", "wieght": 1}]}, "Did you mean 'weight'"),
        ({"dataset": []}, "Did you mean 'datasets'"),
        (
            {"datasets": [{"path": "a/x", "embodiment": "gr1"}, {"path": "b/x", "embodiment": "gr1"}]},
            "duplicate",
        ),
    ],
)
def test_malformed_files_name_file_and_key(mixdir: Path, data: dict, message: str) -> None:
    _write(mixdir, "bad", data)
    with pytest.raises(MixtureError, match=message) as info:
        load_mixture("bad")
    assert "bad.yaml" in str(info.value)


def test_resolve_data_dir_or_name(mixdir: Path, tmp_path: Path) -> None:
    ds = tmp_path / "my_robot_data"
    ds.mkdir()
    m = resolve_data(str(ds), embodiment="new_embodiment")
    assert m.paths == [ds] and m.weights == [1.0]
    with pytest.raises(MixtureError, match="embodiment"):
        resolve_data(str(ds))
    with pytest.raises(MixtureError, match="no such dataset directory"):
        resolve_data(str(tmp_path / "missing"), embodiment="gr1")
    _write(mixdir, "named", {"datasets": [{"path": "x", "embodiment": "gr1"}]})
    assert resolve_data("named", data_root="/r").paths == [Path("/r/x")]
