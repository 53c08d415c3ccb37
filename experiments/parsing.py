"""Typed command-line parsing shared by `w2svqa` and experiment files: a jsonargparse parser
from a function's signature, and parse errors that name the nearest valid option.

jsonargparse reads types, defaults and docstrings; what it does not do is added here: a boolean
flag given alone (`--list`), hyphenated spellings of underscored options (`--output-dir`), a
positional list (`score PATH...`) and "did you mean" for a misspelt key.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser


def function_parser(function: Any, prog: str) -> ArgumentParser:
    """The typed parser of a command function: its signature and docstring."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    description = (function.__doc__ or "").split("\n\n    Args:")[0].replace("\n    ", "\n")
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="The options as a YAML file.")
    parser.add_function_arguments(function, as_group=False, as_positional=True, fail_untyped=True)
    return parser


def parse(parser: ArgumentParser, args: list[str], source: str = "the command line"):
    """`parser.parse_args` with bare boolean flags, hyphenated spellings and errors that name the
    nearest valid option; a parse error prints the usage and the message, and exits 2."""
    args = bare_flags(parser, [underscored(a) for a in args])
    try:
        return parser.parse_args(args)
    except Exception as err:  # jsonargparse.ArgumentError and friends: the user's input
        message = explain(parser, str(err))
        usage = parser.format_usage().rstrip()
        print(f"{usage}\nerror: {message}\n(see `{parser.prog} --help`)", file=sys.stderr)
        raise SystemExit(2) from None


def underscored(arg: str) -> str:
    """`--output-dir` -> `--output_dir`: one spelling, the other still understood."""
    if not arg.startswith("--"):
        return arg
    flag, eq, value = arg.partition("=")
    return flag.replace("-", "_").replace("__", "--", 1) + eq + value


def options_of(parser: ArgumentParser) -> list[str]:
    """Every `--option` the parser takes, nested ones (`--training.steps`) included."""
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def bool_options(parser: ArgumentParser) -> set[str]:
    bools = set()
    for action in parser._actions:
        hint = getattr(action, "_typehint", None)
        if hint is bool or str(hint) in ("bool | None", "typing.Optional[bool]"):
            bools.update(action.option_strings)
    return bools


BOOLS = ("true", "false", "yes", "no", "1", "0")


def bare_flags(parser: ArgumentParser, args: list[str]) -> list[str]:
    """A boolean option given alone (`--list`, `--no_mlflow`) means true; jsonargparse wants a
    value for every option."""
    bools, out = bool_options(parser), []
    for i, arg in enumerate(args):
        following = args[i + 1].lower() if i + 1 < len(args) else None
        bare = arg in bools and (following is None or following not in BOOLS)
        out.append(f"{arg}=true" if bare else arg)
    return out


def explain(parser: ArgumentParser, message: str) -> str:
    """jsonargparse's message, with the nearest valid option for a misspelt one."""
    options = options_of(parser)
    unknown = re.match(r"unrecognized arguments: (--[\w.]+)", message, re.IGNORECASE)
    if unknown:
        flag = unknown.group(1)
        return f"{flag}: no such option{_nearest(flag, options)}"
    in_group = re.search(r"Group '([\w.]+)' does not accept option '([\w.]+)'", message)
    if in_group:
        key = f"--{in_group.group(1)}.{in_group.group(2)}"
        return f"{key[2:]}: no such key{_nearest(key, options, strip=True)}\n  ({message})"
    return message


def _nearest(flag: str, options: list[str], strip: bool = False) -> str:
    close = difflib.get_close_matches(flag, [o.removesuffix("+") for o in options], n=1)
    if not close:
        return ""
    return f"; did you mean {close[0][2:] if strip else close[0]}?"


def gather_free(args: list[str], name: str, parser: ArgumentParser) -> list[str]:
    """`score [options] PATH...`: the free arguments become `--paths=[...]` (jsonargparse reads a
    positional list only in its own bracket syntax)."""
    if any(a in ("-h", "--help") for a in args):
        return args
    bools = bool_options(parser)
    options, free, i = [], [], 0
    while i < len(args):
        arg = args[i]
        flag = underscored(arg)
        takes_value = flag.startswith("--") and "=" not in flag and flag not in bools
        if takes_value and flag != "--print_config" and i + 1 < len(args):
            options += [arg, args[i + 1]]
            i += 2
            continue
        (options if arg.startswith("--") else free).append(arg)
        i += 1
    return options + ([f"--{name}={json.dumps(free)}"] if free else [])
