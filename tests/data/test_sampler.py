"""MixtureSampler: order is a pure function of (seed, epoch, position); exact resume; sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gr00t.data.sampler import MixtureSampler, SampleIndex, allocate_draws, permute, sample_rng


class IndexDataset(Dataset):
    """Returns its own index, so what the DataLoader delivers shows what the sampler chose."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _loader(sampler: MixtureSampler, n: int, workers: int = 2, batch: int = 4) -> DataLoader:
    return DataLoader(
        IndexDataset(n),
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
    )


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 257, 1000])
def test_permute_is_a_bijection_and_keyed(n: int) -> None:
    p = permute(np.arange(n), n, key=7)
    assert sorted(p.tolist()) == list(range(n))
    assert np.array_equal(p, permute(np.arange(n), n, key=7))
    if n >= 64:
        assert not np.array_equal(p, permute(np.arange(n), n, key=8))
        assert not np.array_equal(p, np.arange(n))


def test_permute_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        permute(np.array([5]), 5, key=0)


def test_allocate_draws_sums_and_proportions() -> None:
    assert allocate_draws(10, [1, 1]) == [5, 5]
    counts = allocate_draws(100, [0.5, 0.3, 0.2])
    assert counts == [50, 30, 20]
    counts = allocate_draws(7, [1, 1, 1])
    assert sum(counts) == 7 and max(counts) - min(counts) <= 1
    with pytest.raises(ValueError, match="not all zero"):
        allocate_draws(5, [0, 0])


def test_unweighted_epoch_visits_every_sample_once() -> None:
    sizes = [13, 7, 30]
    s = MixtureSampler(sizes, seed=3)
    epoch0 = list(s)
    epoch1 = list(s)  # exhausted iteration moves on by itself
    assert sorted(epoch0) == list(range(50)) and sorted(epoch1) == list(range(50))
    assert epoch0 != epoch1
    # pure function of (seed, epoch, position)
    again = MixtureSampler(sizes, seed=3)
    again.set_epoch(1)
    assert list(again) == epoch1
    assert list(MixtureSampler(sizes, seed=4)) != epoch0


def test_weighted_epoch_counts_and_without_replacement() -> None:
    sizes = [10, 1000, 40]
    s = MixtureSampler(sizes, weights=[2.0, 1.0, 1.0], epoch_length=80, seed=0)
    assert s.counts == [40, 20, 20]
    seen_small: list[int] = []
    for epoch in range(3):
        s.set_epoch(epoch)
        idx = np.array(list(s))
        which = s.dataset_of(idx)
        assert np.bincount(which, minlength=3).tolist() == [40, 20, 20]
        big = idx[which == 1]
        assert len(set(big.tolist())) == 20  # no replacement inside the large dataset
        seen_small.extend((idx[which == 0]).tolist())
    # dataset 0 (10 samples) is drawn 120 times: 12 full cycles, each sample exactly 12 times
    assert np.bincount(seen_small).tolist() == [12] * 10


def test_weighted_draws_are_well_mixed() -> None:
    s = MixtureSampler([500, 500], weights=[0.8, 0.2], epoch_length=1000, seed=1)
    which = s.dataset_of(np.array(list(s)))
    # every window of 200 draws holds about 80 % of dataset 0 (binomial sd ~5.7 → 5 sd margin)
    for lo in range(0, 1000, 200):
        frac = (which[lo : lo + 200] == 0).mean()
        assert abs(frac - 0.8) < 0.15, (lo, frac)


def test_unshuffled_order_is_natural() -> None:
    s = MixtureSampler([3, 2], shuffle=False)
    assert list(s) == [0, 1, 2, 3, 4]


def test_two_ranks_two_workers_cover_epoch_without_overlap() -> None:
    sizes = [17, 23, 40]
    n = sum(sizes)
    per_rank: list[list[int]] = []
    for rank in range(2):
        s = MixtureSampler(sizes, weights=[1, 1, 2], seed=11, rank=rank, world_size=2)
        got = [int(i) for batch in _loader(s, n, workers=2, batch=3) for i in batch]
        assert len(got) == len(s) == s.epoch_length // 2
        per_rank.append(got)
    reference = MixtureSampler(sizes, weights=[1, 1, 2], seed=11)
    draws = reference.global_index(0, np.arange(reference.epoch_length)).tolist()
    # rank r owns positions r, r+2, ...; together they are exactly the epoch's draws, each once
    assert per_rank[0] == draws[0::2] and per_rank[1] == draws[1::2]
    assert sorted(per_rank[0] + per_rank[1]) == sorted(draws)


def test_ranks_partition_unweighted_epoch() -> None:
    sizes = [31, 50]
    got = []
    for rank in range(2):
        s = MixtureSampler(sizes, seed=5, rank=rank, world_size=2)
        got.append([int(i) for b in _loader(s, 81, workers=2) for i in b])
    assert not set(got[0]) & set(got[1])
    # 81 samples, world 2: the epoch holds 80 draws; the left-out one opens the next epoch
    assert len(got[0]) + len(got[1]) == 80 and len(set(got[0]) | set(got[1])) == 80


@pytest.mark.parametrize("stop_batches", [0, 3, 11, 17])
def test_resume_mid_epoch_with_workers_matches_uninterrupted(stop_batches: int) -> None:
    sizes, weights, batch = [9, 30, 14], [1.0, 3.0, 1.0], 4
    kw = dict(sizes=sizes, weights=weights, seed=123, epoch_length=40, round_to=batch)

    def run(sampler: MixtureSampler, num_batches: int) -> list[int]:
        out: list[int] = []
        epoch = sampler.epoch
        while len(out) < num_batches * batch:
            sampler.set_epoch(epoch)
            for b in _loader(sampler, sum(sizes), workers=2, batch=batch):
                out.extend(int(i) for i in b)
                sampler.advance(len(b))  # the trainer reports what it consumed
                if len(out) >= num_batches * batch:
                    break
            epoch += 1
        return out

    total = 25  # 2.5 epochs of 10 batches
    uninterrupted = run(MixtureSampler(**kw), total)
    first = MixtureSampler(**kw)
    head = run(first, stop_batches) if stop_batches else []
    state = first.state_dict()
    assert state["consumed"] == stop_batches * batch  # workers prefetched more; not counted
    resumed = MixtureSampler(**kw)
    resumed.load_state_dict(state)
    tail = run(resumed, total - stop_batches)
    assert head + tail == uninterrupted


def test_resume_with_other_world_size() -> None:
    kw = dict(sizes=[20, 20], seed=9)
    full = MixtureSampler(**kw).global_index(0, np.arange(40)).tolist()
    state = MixtureSampler(**kw).state_dict(consumed=12)
    shards = []
    for rank in range(4):
        s = MixtureSampler(**kw, rank=rank, world_size=4)
        s.load_state_dict(state)
        shards.append(list(s))
    merged = [shards[p % 4][p // 4] for p in range(28)]
    assert merged == full[12:]


def test_load_state_rejects_changed_mixture() -> None:
    state = MixtureSampler([10, 10], seed=1).state_dict(consumed=4)
    with pytest.raises(ValueError, match="sizes"):
        MixtureSampler([10, 11], seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler([10, 10], seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size=3"):
        MixtureSampler([10, 10], seed=1, rank=0, world_size=3, epoch_length=18).load_state_dict(
            MixtureSampler([10, 10], seed=1, epoch_length=18).state_dict(consumed=4)
        )


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="sizes"):
        MixtureSampler([0, 5])
    with pytest.raises(ValueError, match="rank=2"):
        MixtureSampler([5], rank=2, world_size=2)
    with pytest.raises(ValueError, match="2 weights"):
        MixtureSampler([5, 5, 5], weights=[1, 1])
    with pytest.raises(ValueError, match="round_to"):
        MixtureSampler([5], round_to=6)


def test_state_survives_torch_save(tmp_path) -> None:
    s = MixtureSampler([5, 6], seed=2)
    torch.save(s.state_dict(consumed=6), tmp_path / "s.pt")
    r = MixtureSampler([5, 6], seed=2)
    r.load_state_dict(torch.load(tmp_path / "s.pt"))
    assert (
        r.epoch == 0 and list(r) == MixtureSampler([5, 6], seed=2).global_index(0, np.arange(6, 11)).tolist()
    )


class KeyDataset(Dataset):
    """Returns what a worker receives: the index and the draw it carries."""

    def __len__(self) -> int:
        return 1000

    def __getitem__(self, i: int) -> tuple[int, int, int, int, float]:
        return int(i), i.seed, i.epoch, i.position, float(sample_rng(i).uniform())


def test_indices_carry_their_draw_through_workers_and_resume() -> None:
    kw = dict(sizes=[7, 5], seed=4, epoch_length=12, round_to=2)
    s = MixtureSampler(**kw)
    epoch0 = list(s)
    assert [(k.seed, k.epoch, k.position) for k in epoch0] == [(4, 0, p) for p in range(12)]
    assert [int(k) for k in epoch0] == s.global_index(0, np.arange(12)).tolist()
    assert [k.epoch for k in s] == [1] * 12  # exhausted: the next pass is epoch 1
    loader = DataLoader(
        KeyDataset(), batch_size=2, sampler=MixtureSampler(**kw), num_workers=2, collate_fn=list
    )
    delivered = [row for b in loader for row in b]
    assert delivered == [(int(k), 4, 0, k.position, float(sample_rng(k).uniform())) for k in epoch0]
    # rank 1 of 2, resumed after 4 draws: positions 5, 7, 9, 11 of the same global order
    r = MixtureSampler(**kw, rank=1, world_size=2)
    r.load_state_dict(MixtureSampler(**kw).state_dict(consumed=4))
    assert [(int(k), k.position) for k in r] == [(int(epoch0[p]), p) for p in (5, 7, 9, 11)]


def test_sample_rng_depends_on_draw_not_on_index_alone() -> None:
    def first(i: int) -> float:
        return float(sample_rng(i).uniform())

    assert first(SampleIndex(3, 0, 0, 5)) == first(SampleIndex(3, 0, 0, 5))
    draws = {
        first(SampleIndex(3, 0, 0, 5)),
        first(SampleIndex(3, 0, 0, 6)),
        first(SampleIndex(3, 0, 1, 5)),
        first(SampleIndex(3, 1, 0, 5)),
        first(3),
    }
    assert len(draws) == 5
    assert float(sample_rng(3, seed=2).uniform()) != first(3) == first(3)
    k = SampleIndex(3, 1, 2, 5)
    assert k == 3 and k + 1 == 4 and type(k + 1) is int and "position=5" in repr(k)
    with pytest.raises(ValueError, match="non-negative"):
        sample_rng(-1)
