"""WindowSampler: the decode-aware order is a pure function of (seed, layout, position); windows of
consecutive steps; coverage, weights, sharding, resume and batch randomness."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from gr00t.data.intervention import episodes_digest
from gr00t.data.sampler import MixtureSampler, SampleIndex, sample_rng
from gr00t.data.window_sampler import CHUNK_STRIDE, WindowSampler


def chunk_table(episodes: int, length: int, chunk: int) -> np.ndarray:
    """(episode, first step, steps, first index) rows: each episode of `length` steps cut every `chunk`."""
    rows, index = [], 0
    for ep in range(episodes):
        for start in range(0, length, chunk):
            n = min(chunk, length - start)
            rows.append((ep, start, n, index))
            index += n
    return np.asarray(rows, dtype=np.int64)


def locate(table: np.ndarray, index: int) -> tuple[int, int]:
    row = table[np.searchsorted(table[:, 3], index, side="right") - 1]
    return int(row[0]), int(row[1] + index - row[3])


def take(
    sampler: WindowSampler, n: int, stream: int = 0, streams: int = 1, skip: int = 0
) -> list[SampleIndex]:
    it = sampler.draws(stream, streams, skip)
    return [next(it)[1] for _ in range(n)]


def test_blocks_hold_one_window_of_consecutive_steps_per_lane() -> None:
    table = chunk_table(6, 40, 16)
    s = WindowSampler([table], seed=2, lanes=4, window=5)
    blocks = s.blocks(0, 1)
    previous_end: dict[int, tuple[int, int]] = {}
    for _ in range(12):
        block = next(blocks)
        assert len(block.windows) == 4 and sorted(block.order.tolist()) == list(range(20))
        for lane, pieces in enumerate(block.windows):
            assert sum(p.count for p in pieces) == 5
            for piece in pieces:  # each piece: consecutive steps inside one chunk
                ep, step = locate(table, piece.first_index)
                assert (ep, step) == (piece.episode, piece.first_step)
                assert locate(table, piece.first_index + piece.count - 1) == (ep, step + piece.count - 1)
            first = pieces[0]
            if lane in previous_end and previous_end[lane][0] == first.episode:
                assert first.first_step >= previous_end[lane][1]  # the lane reads its episode forward
            previous_end[lane] = (pieces[-1].episode, pieces[-1].first_step + pieces[-1].count)


def test_order_is_pure_and_keys_are_unique() -> None:
    table = chunk_table(5, 30, 8)
    a = take(WindowSampler([table], seed=4, lanes=3, window=4), 500)
    b = take(WindowSampler([table], seed=4, lanes=3, window=4), 500)
    assert [(int(x), x.epoch, x.position) for x in a] == [(int(x), x.epoch, x.position) for x in b]
    assert [int(x) for x in take(WindowSampler([table], seed=5, lanes=3, window=4), 500)] != [
        int(x) for x in a
    ]
    keys = [(x.epoch, x.position) for x in a]
    assert len(set(keys)) == len(keys)
    assert all(0 <= x.position % CHUNK_STRIDE < 8 for x in a)
    # augmentation draws follow the key: same draw, same generator
    assert sample_rng(a[7]).random() == sample_rng(b[7]).random() != sample_rng(a[8]).random()


@pytest.mark.parametrize("streams", [1, 4])
def test_every_sample_is_drawn_equally_often(streams: int) -> None:
    tables = [chunk_table(4, 40, 16), chunk_table(3, 100, 50)]
    s = WindowSampler(tables, seed=1, lanes=4, window=5)
    per_stream = 2000 // streams * 4
    counts = collections.Counter(int(x) for k in range(streams) for x in take(s, per_stream, k, streams))
    assert sorted(counts) == list(range(160 + 300))
    # ~17 each: lanes read at one rate, so a lane with long chunks lags its epochs by a chunk or two
    assert 0.8 * 2000 * 4 / 460 <= min(counts.values()) and max(counts.values()) <= 1.25 * 2000 * 4 / 460


def test_weights_are_shares_of_samples() -> None:
    tables = [chunk_table(5, 40, 16), chunk_table(3, 100, 50)]
    s = WindowSampler(tables, weights=[0.8, 0.2], seed=0, lanes=4, window=5)
    draws = take(s, 20000)
    share = np.mean([int(x) < 200 for x in draws])
    assert abs(share - 0.8) < 0.02


def test_skip_continues_the_same_stream() -> None:
    s = WindowSampler([chunk_table(7, 300, 250)], seed=3, lanes=16, window=8)
    full = [int(x) for x in take(s, 3000, 1, 3)]
    for skip in (1, 127, 128, 129, 2049):
        assert [int(x) for x in take(s, 300, 1, 3, skip=skip)] == full[skip : skip + 300]


def test_stream_skip_follows_the_dataloaders_round_robin() -> None:
    s = WindowSampler([chunk_table(3, 50, 16)], seed=0, rank=1, world_size=2)
    s.configure_loader(batch_size=4, num_workers=3)
    s.load_state_dict(s.state_dict(consumed=2 * 4 * 7))  # 7 batches per rank consumed
    assert [s.stream_skip(k, 3) for k in range(3)] == [12, 8, 8]  # batches 0,3,6 / 1,4 / 2,5


def test_batches_of_64_mix_many_episodes() -> None:
    """Long GOP (chunks of 250 steps): a batch of 64 still draws from >= 8 episodes; the same-episode
    rate of neighbours inside a batch stays near random access's."""
    episodes = 20
    table = chunk_table(episodes, 285, 250)
    draws = [int(x) for x in take(WindowSampler([table], seed=0), 64 * 50)]
    eps = np.asarray([locate(table, i)[0] for i in draws]).reshape(50, 64)
    distinct = [len(set(b)) for b in eps]
    assert min(distinct) >= 8 and np.mean(distinct) >= 10
    same = np.mean(eps[:, 1:] == eps[:, :-1])
    random_eps = np.asarray(
        [
            locate(table, i)[0]
            for i in list(MixtureSampler([len(draws)], seed=0))[: 64 * 50]
            if i < table[-1, 3]
        ]
    )
    assert same < 2.5 / 12 and same < 4 * np.mean(random_eps[1:] == random_eps[:-1]) + 0.05


def test_state_checks() -> None:
    table = chunk_table(3, 40, 16)
    s = WindowSampler([table], seed=0)
    state = s.state_dict(consumed=64)
    other = WindowSampler([table], seed=1)
    with pytest.raises(ValueError, match="'seed'"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="dataloader_sampling=random"):
        s.load_state_dict(MixtureSampler([120], seed=0).state_dict(consumed=8))
    with pytest.raises(ValueError, match="dataloader_sampling=windows"):
        MixtureSampler([120], seed=0).load_state_dict(state)
    resumed = WindowSampler([table], seed=0, lanes=4)
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match="another layout"):
        resumed.configure_loader(batch_size=1, num_workers=0)
    assert resumed.consumed == 64


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one chunk"):
        WindowSampler([np.zeros((0, 4))])
    with pytest.raises(ValueError, match="lanes=0"):
        WindowSampler([chunk_table(1, 10, 5)], lanes=0)
    with pytest.raises(ValueError, match="2 weights given for 1"):
        WindowSampler([chunk_table(1, 10, 5)], weights=[1, 2])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_disjoint_streams_and_resume_exactly(world: int) -> None:
    """A loader without workers: rank r iterates stream r of W; the ranks' chunks and keys never
    overlap, together they cover every sample, and a rank restored from a saved position continues its
    uninterrupted sequence exactly."""
    table = chunk_table(9, 60, 16)
    n = 2 * 540 // world  # two epochs' worth over all ranks
    runs = []
    for rank in range(world):
        s = WindowSampler([table], seed=6, rank=rank, world_size=world, lanes=3, window=4)
        run = [x for _, x in zip(range(n), s)]
        assert [(int(x), x.position) for x in run] == [(int(x), x.position) for x in take(s, n, rank, world)]
        runs.append(run)
        for consumed in (world * 1, world * 37, world * 12 * 9):  # mid-window, mid-block, later
            resumed = WindowSampler([table], seed=6, rank=rank, world_size=world, lanes=3, window=4)
            resumed.load_state_dict(s.state_dict(consumed=consumed))
            again = [x for _, x in zip(range(50), resumed)]
            start = consumed // world
            assert [(int(x), x.epoch, x.position) for x in again] == [
                (int(x), x.epoch, x.position) for x in run[start : start + 50]
            ]
    keys = [(x.epoch, x.position // CHUNK_STRIDE) for run in runs for x in run]
    per_rank = [{(x.epoch, x.position // CHUNK_STRIDE) for x in run} for run in runs]
    assert sum(len(k) for k in per_rank) == len(set(keys))  # no chunk ticket is read by two ranks
    assert len({int(x) for run in runs for x in run}) == 540  # together they cover every sample


# ---- intervention up-weighting: episode factors on the chunk tickets -----------------------------
FLAGGED = {2: 3.0, 4: 3.0}  # dataset 0's episodes 2 and 4, drawn 3x as often per sample


def weighted(**kwargs) -> WindowSampler:
    tables = [chunk_table(6, 40, 16), chunk_table(3, 100, 50)]  # chunks of 16, 16, 8 / 50, 50 steps
    return WindowSampler(tables, weights=[0.7, 0.3], factors=[FLAGGED, None], lanes=4, window=5, **kwargs)


@pytest.mark.parametrize("streams", [1, 4])
def test_flagged_chunks_are_drawn_weight_times_as_often_per_sample(streams: int) -> None:
    s = weighted(seed=1)
    assert [row[:3] for row in s.strata] == [
        [0, 4, 1.0],
        [0, 2, 3.0],
        [1, 3, 1.0],
    ]  # (dataset, episodes, factor)
    counts = np.bincount(
        [int(x) for k in range(streams) for x in take(s, 32000 // streams, k, streams)], minlength=540
    )
    table = chunk_table(6, 40, 16)
    per_chunk = np.array([counts[i : i + n].mean() for _, _, n, i in table])  # draws per sample
    flagged = np.isin(table[:, 0], list(FLAGGED))
    assert abs(per_chunk[flagged].mean() / per_chunk[~flagged].mean() - 3.0) < 0.2
    assert per_chunk[flagged].min() > 2.4 * per_chunk[~flagged].max()  # every flagged chunk, not on average
    assert abs(counts[240:].sum() / counts.sum() - 0.3) < 0.02  # the second dataset keeps its share
    assert sorted(np.flatnonzero(counts).tolist()) == list(range(540))  # unflagged samples still come


def test_without_factors_the_order_is_unchanged() -> None:
    tables = [chunk_table(6, 40, 16), chunk_table(3, 100, 50)]
    plain = WindowSampler(tables, weights=[0.7, 0.3], seed=1, lanes=4, window=5)
    none = WindowSampler(tables, weights=[0.7, 0.3], seed=1, lanes=4, window=5, factors=[None, None])
    assert none.strata is None and "strata" not in none.state_dict()
    assert [(int(x), x.position) for x in take(none, 500)] == [(int(x), x.position) for x in take(plain, 500)]


@pytest.mark.parametrize("world", [1, 2])
def test_weighted_order_resumes_exactly_and_refuses_another_weighting(world: int) -> None:
    for rank in range(world):
        s = weighted(seed=6, rank=rank, world_size=world)
        run = [x for _, x in zip(range(1200 // world), s)]
        for consumed in (world * 3, world * 137, world * 20 * 19):  # mid-window, mid-block, later
            resumed = weighted(seed=6, rank=rank, world_size=world)
            resumed.load_state_dict(s.state_dict(consumed=consumed))
            again = [x for _, x in zip(range(60), resumed)]
            start = consumed // world
            assert [(int(x), x.epoch, x.position) for x in again] == [
                (int(x), x.epoch, x.position) for x in run[start : start + 60]
            ]
    state = weighted(seed=6).state_dict(consumed=40)
    assert [row[:3] for row in state["strata"]] == [[0, 4, 1.0], [0, 2, 3.0], [1, 3, 1.0]]
    assert state["strata"][1][3] == episodes_digest([2, 4])  # which episodes, not only how many
    tables = [chunk_table(6, 40, 16), chunk_table(3, 100, 50)]
    others = [
        WindowSampler(
            tables, weights=[0.7, 0.3], factors=[{2: 5.0, 4: 5.0}, None], seed=6, lanes=4, window=5
        ),
        WindowSampler(tables, weights=[0.7, 0.3], factors=[{2: 3.0}, None], seed=6, lanes=4, window=5),
        # other episodes flagged, as many as before
        WindowSampler(
            tables, weights=[0.7, 0.3], factors=[{1: 3.0, 4: 3.0}, None], seed=6, lanes=4, window=5
        ),
        WindowSampler(tables, weights=[0.7, 0.3], seed=6, lanes=4, window=5),
    ]
    for other in others:
        with pytest.raises(ValueError, match="the intervention weighting changed"):
            other.load_state_dict(state)
    with pytest.raises(ValueError, match="the intervention weighting changed"):  # a weighting added
        weighted(seed=6).load_state_dict(others[3].state_dict(consumed=40))
    # a checkpoint written before the digest was recorded still resumes, compared on the rest
    legacy = {**state, "strata": [row[:3] for row in state["strata"]]}
    resumed = weighted(seed=6)
    resumed.load_state_dict(legacy)
    assert resumed.consumed == 40
    with pytest.raises(ValueError, match="the intervention weighting changed"):
        others[0].load_state_dict(legacy)
