"""What `gr00t-train` and `gr00t-finetune` share: compose the recipe, check the inputs, train.

    gr00t-<cmd> [recipe=<name>] [group=<option> ...] [key=value ...] [config_dir=<folder>]
                [--cfg job] [--help] [--debug]

Composition is Hydra's (`gr00t.configs.compose`): unknown keys and bad values fail before
anything runs. Then the cheap checks (`gr00t.cli.checks.training_inputs`) run before torch is
imported, and only then `gr00t.train.build.build_and_train`. `--config-dir <folder>` is the same
as `config_dir=<folder>`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gr00t.cli.common import UsageError, run_main

COMMON_HELP = """\
Settings are key=value: a config group option (model=n16_tiny), any key of the config below
(trainer.max_steps=2000, model.state_dropout_prob=0.8), or +new.key=value. Unknown keys and bad
values are rejected with the valid choices before anything runs.

  recipe=<name>          the recipe to start from (see Recipes)
  config_dir=<folder>    a folder of your own configs (embodiment/, model/, trainer/, recipes/,
                         data_mixtures/), added to the shipped ones; also $GR00T_CONFIG_DIR
  run_dir=<folder>       default runs/<recipe>/<embodiment>-<dataset name>: re-running the same
                         command resumes from its newest complete checkpoint (resume=false starts over)
  --cfg job              print the composed config and exit
  --debug                show the traceback of an error
"""


def _split_flags(args: Sequence[str]) -> tuple[bool, bool, list[str]]:
    """(--help given, --cfg job given, key=value settings)."""
    help_, show, settings = False, False, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            help_ = True
        elif arg in ("--cfg", "-c") or arg.startswith("--cfg="):
            value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            i += 0 if "=" in arg else 1
            if value != "job":
                raise UsageError(f"--cfg {value}: only '--cfg job' is supported")
            show = True
        elif arg in ("--config-dir", "-cd"):
            if i + 1 >= len(args):
                raise UsageError(f"{arg} needs a folder")
            settings.append(f"config_dir={args[i + 1]}")
            i += 1
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg!r}: settings are key=value (see --help)")
        else:
            settings.append(arg)
        i += 1
    return help_, show, settings


def print_help(prog: str, usage: str, default_recipe: str, settings: list[str]) -> None:
    """Usage, recipes, config groups and the composed config of the chosen recipe."""
    from omegaconf import OmegaConf

    from gr00t.configs.compose import GROUPS, compose_recipe, group_options, recipe_names
    from gr00t.configs.errors import ConfigError

    print(usage.strip() + "\n\n" + COMMON_HELP)
    print(f"Recipes (recipe=<name>, default {default_recipe}): {', '.join(recipe_names())}\n")
    print("Config groups (group=<option>):")
    for group in GROUPS:
        extra = "  (or a path to a robot YAML file, or a tag)" if group == "embodiment" else ""
        print(f"  {group}: {', '.join(group_options(group))}{extra}")
    try:
        composed = compose_recipe(settings, default_recipe, set_hydra_config=False)
    except ConfigError as exc:
        print(f"\n(cannot compose the config: {exc})")
        return
    print(f"\nConfig of recipe {composed.recipe} (gr00t-{prog.split('-', 1)[-1]} --cfg job prints it too):\n")
    print(OmegaConf.to_yaml(composed.cfg), end="")


def run_training_command(prog: str, default_recipe: str, usage: str, argv: Sequence[str] | None) -> int:
    """Entry point shared by `gr00t-train` and `gr00t-finetune`."""

    def body(args: list[str]) -> int:
        help_, show, settings = _split_flags(args)
        if help_:
            print_help(prog, usage, default_recipe, settings)
            return 0
        from omegaconf import OmegaConf

        from gr00t.configs.compose import compose_recipe

        composed = compose_recipe(settings, default_recipe)
        if show:
            print(OmegaConf.to_yaml(composed.cfg), end="")
            return 0
        from gr00t.cli.checks import training_inputs

        training_inputs(composed.cfg)
        from gr00t.train.build import build_and_train

        return build_and_train(composed.cfg, log_name=prog)

    return run_main(prog, body, argv)
