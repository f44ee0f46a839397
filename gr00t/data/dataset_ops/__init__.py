"""Dataset operations behind `gr00t-dataset`: info, merge, append and split of LeRobot v2.1/v3.0 datasets.

| module | holds |
|---|---|
| `source.py` | an input dataset: reader, whole rows, per-episode stats, extra episode metadata |
| `plan.py` | compatibility checks, task union and remapping, episode renumbering |
| `writer.py` | options, report, renumbered rows + statistics, metadata shared by both versions |
| `layout_v21.py` / `layout_v30.py` | the two LeRobot file layouts |
| `video_remux.py` | mp4 stream copy of episode segments (re-encoding only as a fallback) |
| `stats_rewrite.py` | statistics equal to those recomputed on the output |
| `publish.py` | staging folder + atomic publish, output lock |
| `ops.py` | merge / append / split |
| `info.py` | the `info` summary |
"""

from gr00t.data.dataset_ops.info import dataset_summary, format_summary
from gr00t.data.dataset_ops.ops import append, choose_validation, merge, split
from gr00t.data.dataset_ops.publish import PublishError
from gr00t.data.dataset_ops.source import DatasetOpsError
from gr00t.data.dataset_ops.writer import WriteReport

__all__ = [
    "DatasetOpsError",
    "PublishError",
    "WriteReport",
    "append",
    "choose_validation",
    "dataset_summary",
    "format_summary",
    "merge",
    "split",
]
