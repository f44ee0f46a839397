"""merge / append / split: plan the output, write it into a staging folder, publish it whole.

Statistics: LeRobot's files (stats.json, per-episode stats) are rewritten by the writer (see
stats_rewrite.py). gr00t's `meta/relative_stats.json` depends on an embodiment; it is recomputed on
the output for the embodiment the inputs' files name (or `embodiment=`), and left out when they name
different ones, so training recomputes it on first use instead of trusting stale numbers.
"""

from __future__ import annotations

from pathlib import Path

from gr00t.data.dataset_ops import layout_v21, layout_v30
from gr00t.data.dataset_ops.duplicates import repeated_episodes
from gr00t.data.dataset_ops.plan import Plan, make_plan
from gr00t.data.dataset_ops.publish import staged_output
from gr00t.data.dataset_ops.source import DatasetOpsError, SourceDataset, open_source
from gr00t.data.dataset_ops.writer import EpisodeRows, WriteOptions, WriteReport
from gr00t.data.heldout import draw_episodes, episode_count


def write_dataset(root: Path, plan: Plan, options: WriteOptions) -> WriteReport:
    """Write `plan` into the empty folder `root`."""
    report = WriteReport()
    rows = EpisodeRows(plan)
    layout = layout_v30 if plan.version == "v3.0" else layout_v21
    layout.write(root, plan, rows, options, report)
    return report


def _check_paths(inputs: list[Path], out: Path | None) -> None:
    resolved = [p.resolve() for p in inputs]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise DatasetOpsError(f"{inputs[i]} is given twice")
    if out is not None:
        target = out.resolve()
        for given, path in zip(inputs, resolved):
            if target == path or path in target.parents:
                raise DatasetOpsError(f"out={out} lies inside the input {given}; choose a folder outside it")


def _relative_stats(
    root: Path, sources: list[SourceDataset], embodiment: str | None, report: WriteReport
) -> None:
    """Recompute meta/relative_stats.json on the output, or say why it is left out."""
    from gr00t.data.embodiment import EmbodimentConfigError, load_embodiment
    from gr00t.data.stats import StatsError, compute_stats, write_stats

    if embodiment is None:
        tags = sorted({str(s.relative_stats.get("embodiment")) for s in sources if s.relative_stats})
        if not tags:
            return
        if len(tags) > 1:
            report.notes.append(
                f"meta/relative_stats.json left out: the inputs' were computed for different embodiments {tags}; "
                "training recomputes it, or run gr00t-stats <out> --embodiment <name>"
            )
            return
        embodiment = tags[0]
        try:
            emb = load_embodiment(embodiment)
        except (EmbodimentConfigError, FileNotFoundError, ValueError) as err:
            report.notes.append(f"meta/relative_stats.json left out: embodiment {embodiment!r}: {err}")
            return
    else:
        emb = load_embodiment(embodiment)
    try:
        columns, relative = compute_stats(root, emb)
    except (StatsError, FileNotFoundError, ValueError) as err:
        report.notes.append(f"meta/relative_stats.json left out: {err}")
        return
    write_stats(root, columns, relative, emb)
    report.notes.append(f"meta/relative_stats.json recomputed for embodiment {emb.tag!r}")


def merge(
    inputs: list[str | Path],
    out: str | Path,
    overwrite: bool = False,
    verify: bool = True,
    reencode: bool = False,
    embodiment: str | None = None,
) -> WriteReport:
    """Merge datasets into a new one at `out` (v3.0 if any input is v3.0, else v2.1)."""
    paths, out = [Path(p) for p in inputs], Path(out)
    if len(paths) < 2:
        raise DatasetOpsError(f"merge needs at least two input datasets, got {len(paths)}")
    _check_paths(paths, out)
    sources = [open_source(p) for p in paths]
    plan = make_plan(sources)
    with staged_output(out, replace=overwrite) as tmp:
        report = write_dataset(tmp, plan, WriteOptions(verify=verify, reencode=reencode))
        _relative_stats(tmp, sources, embodiment, report)
    return report


def append(
    base: str | Path,
    new: str | Path,
    verify: bool = True,
    reencode: bool = False,
    embodiment: str | None = None,
    allow_duplicates: bool = False,
) -> WriteReport:
    """Add the episodes of `new` after those of `base`, in place: `base` ends up fully appended or unchanged.

    Files of `base` that do not change are hard-linked into the new version, so only the new
    episodes and the metadata are written. Episodes `base` already holds (same rows, same numeric
    values: `duplicates.repeated_episodes`) are refused unless ``allow_duplicates``.
    """
    base, new = Path(base), Path(new)
    _check_paths([base, new], None)
    if base.resolve() in new.resolve().parents or new.resolve() in base.resolve().parents:
        raise DatasetOpsError(f"{new} and {base} are nested inside each other")
    sources = [open_source(base), open_source(new)]
    if not allow_duplicates:
        _refuse_repeated(*sources)
    plan = make_plan(sources)
    with staged_output(base, replace=True) as tmp:
        report = write_dataset(tmp, plan, WriteOptions(link=True, verify=verify, reencode=reencode))
        if plan.version != sources[0].version:
            report.notes.append(
                f"{base} was {sources[0].version}; appending {sources[1].version} data made it v3.0"
            )
        _relative_stats(tmp, sources, embodiment, report)
    return report


def _refuse_repeated(base: SourceDataset, new: SourceDataset) -> None:
    pairs, columns = repeated_episodes(base, new)
    if not pairs:
        return
    shown = ", ".join(f"{n} = {b}" for n, b in pairs[:4]) + (", ..." if len(pairs) > 4 else "")
    raise DatasetOpsError(
        f"{new.root}: {len(pairs)} of its {len(new.reader.episode_indices)} episodes are already in "
        f"{base.root} (new = base episode: {shown}; same rows and values in {', '.join(columns)}); "
        "was this session appended before? allow_duplicates=true appends them anyway"
    )


def choose_validation(episodes: list[int], val: str | float | int, seed: int) -> list[int]:
    """The validation episodes: `val` is a fraction in (0, 1) or a count, drawn with `seed`."""
    n = len(episodes)
    text = str(val).strip()
    expected = "a fraction such as 0.1 or an episode count such as 5"
    count = episode_count(text, n, "val", "the dataset", DatasetOpsError, expected)
    if n < 2:
        raise DatasetOpsError(f"cannot split a dataset of {n} episode(s)")
    return draw_episodes(episodes, count, seed)


def split(
    root: str | Path,
    val: str | float | int,
    out: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    verify: bool = True,
    reencode: bool = False,
) -> dict[str, WriteReport]:
    """Write `<out>/train` and `<out>/val` (same version as the input; deterministic for a seed)."""
    root, out = Path(root), Path(out)
    _check_paths([root], out)
    source = open_source(root)
    episodes = source.reader.episode_indices
    if len(episodes) < 2:
        raise DatasetOpsError(f"{root}: cannot split a dataset of {len(episodes)} episode(s)")
    val_eps = choose_validation(episodes, val, seed)
    chosen = set(val_eps)
    parts = {"train": [e for e in episodes if e not in chosen], "val": val_eps}
    reports = {}
    with staged_output(out, replace=overwrite) as tmp:
        for name, selection in parts.items():
            plan = make_plan([source], [selection], version=source.version)
            options = WriteOptions(verify=verify, reencode=reencode)
            reports[name] = write_dataset(tmp / name, plan, options)
            _relative_stats(tmp / name, [source], None, reports[name])
    return reports
