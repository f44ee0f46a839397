"""The shared key=value parser (`gr00t.cli.keyvalue`) that every non-recipe command uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import MISSING

from gr00t.cli.keyvalue import parse_settings, setting
from gr00t.configs.errors import ConfigError


@dataclass
class Args:
    out: str = setting(MISSING, "output folder")
    count: int = setting(3, "how many")
    ratio: float = setting(0.5, "a share")
    verbose: bool = setting(False, "talk more")
    seed: int | None = setting(None, "seed or null")
    items: list[int] = field(default_factory=list, metadata={"help": "indices"})


@dataclass
class Merge:
    sources: list[str] = setting(MISSING, "datasets to merge")
    out: str = setting(MISSING, "merged dataset")


def test_values_are_typed_by_the_schema():
    a = parse_settings(
        Args, ["out=/x", "count=7", "ratio=1", "verbose=true", "seed=null", "items=[1,2]"], "p", ""
    )
    assert (a.out, a.count, a.ratio, a.verbose, a.seed, a.items) == ("/x", 7, 1.0, True, None, [1, 2])


def test_positional_paths_and_old_flag_spellings():
    a = parse_settings(
        Args, ["/data/x", "--count", "4", "--verbose", "--seed=9"], "p", "", positional=("out",)
    )
    assert (a.out, a.count, a.verbose, a.seed) == ("/data/x", 4, True, 9)
    m = parse_settings(Merge, ["/a", "/b", "/c", "out=/m"], "p", "", positional=("sources",))
    assert (m.sources, m.out) == (["/a", "/b", "/c"], "/m")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["out=/x", "cuont=2"],
            "unknown key 'cuont': the top level has no key 'cuont'. Did you mean 'count'?",
        ),
        (["out=/x", "count=many"], "count='many': expected an integer"),
        (["out=/x", "verbose=maybe"], "verbose='maybe': expected true or false"),
        (["count=2"], "missing required key(s) out=..."),
        (["/a", "/b"], "unexpected argument '/b'"),
        (["out=/x", "--cuont", "2"], "unknown option '--cuont'. Did you mean 'count'?"),
        (["out=/x", "items=[1,2"], "cannot parse the setting 'items=[1,2'"),
    ],
)
def test_mistakes_are_one_line(argv, message):
    with pytest.raises(ConfigError) as err:  # UsageError is one kind of ConfigError
        parse_settings(Args, argv, "p", "", positional=("out",))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_help_and_cfg_job(capsys):
    assert parse_settings(Args, ["--help"], "gr00t-x", "Does x.") is None
    out = capsys.readouterr().out
    assert out.startswith("usage: gr00t-x out=<out> [key=value ...]") and "how many (default: 3)" in out
    assert parse_settings(Args, ["out=/x", "count=2", "--cfg", "job"], "gr00t-x", "") is None
    assert "count: 2" in capsys.readouterr().out
