"""The command line as a whole: every command is listed and parses through one typed parser;
errors name the fix and exit 2; the commands a user starts with import nothing heavy."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import COMMANDS, main, top_help
from experiments.commands.evaluate import grouped

ROOT = Path(__file__).resolve().parents[1]


def _function(name: str):
    module, _, attr = COMMANDS[name].target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _first_sentence(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_config_and_print_config(name: str, capsys) -> None:
    try:
        main([*name.split(), "--help"])
    except SystemExit as exit_:  # jsonargparse exits after printing the help
        assert exit_.code in (0, None)
    text = capsys.readouterr().out
    assert f"w2svqa {name}" in text
    assert "--config" in text and "--print_config" in text
    # the top-level line is the command's own first sentence, so the two never drift apart
    assert COMMANDS[name].summary == _first_sentence(_function(name).__doc__)


def test_top_level_help_lists_every_command(capsys) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    listed = [line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("  ")]
    for name in COMMANDS:
        assert any(line.startswith(name) for line in listed), name
    assert sum(line.startswith("  pairs ") for line in top_help("pairs").splitlines()) == 3


def test_unknown_command_and_misspelt_option_name_the_nearest(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lable", "--list"])
    assert exit_.value.code == 2
    assert "did you mean `w2svqa label`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["label", "--teacer", "blur"])
    assert exit_.value.code == 2
    assert "--teacer: no such option; did you mean --teacher?" in capsys.readouterr().err


def test_run_misspelt_key_on_the_command_line_and_in_the_file(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "experiments/quickstart.yaml", "--training.stpes", "3", "--print_config"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "the command line" in err and "did you mean --training.steps?" in err
    assert "quickstart.yaml" not in err  # the file is fine; the typo is on the command line
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: " + str(ROOT / "experiments/quickstart.yaml") + "\n"
                   "training: {stpes: 3}\n")  # fmt: skip
    with pytest.raises(SystemExit):
        main(["run", str(bad), "--print_config"])
    err = capsys.readouterr().err
    assert f"{bad}: training.stpes: no such key; did you mean training.steps?" in err


def test_run_print_config_takes_a_number_of_steps_and_either_spelling(capsys) -> None:
    main(["run", "--config", "experiments/quickstart.yaml", "--training.steps", "3",
          "--output-dir", "elsewhere", "--print_config"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "steps: 3" in printed and "output_dir" not in printed  # the run's options stay out


def test_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(SystemExit) as exit_:
        main(["data", "probe", str(missing)])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err.strip() == f"w2svqa data probe: {missing}: no such file or folder"
    )
    from datamodules.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "data", "probe", str(missing)])


def test_evaluate_groups_become_typed_lists() -> None:
    args = grouped(["--checkpoint", "a.safetensors", "--dataset", "konvid_1k", "--root", "k",
                    "--mos_range", "1,5", "--predictions=p.csv", "--score_column", "mos",
                    "--output_dir", "out", "--teacher", "blur"])  # fmt: skip
    values = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
    assert json.loads(values["checkpoints"]) == ["a.safetensors"]
    assert json.loads(values["teachers"]) == ["blur"]
    assert json.loads(values["datasets"]) == [{"name": "konvid_1k", "root": "k",
                                               "mos_range": [1.0, 5.0]}]  # fmt: skip
    assert json.loads(values["tables"]) == [{"file": "p.csv", "score_column": "mos"}]
    assert "--output_dir" in args and "out" in args
    from datamodules.errors import UserError

    with pytest.raises(UserError, match="--root belongs after a --dataset"):
        grouped(["--checkpoint", "a", "--root", "k"])
    with pytest.raises(UserError, match="needs a --root"):
        grouped(["--dataset", "konvid_1k"])


HEAVY = ("torch", "lightning", "transformers", "torchmetrics", "mlflow", "deepspeed")


@pytest.mark.parametrize("argv", [["--help"], ["label", "--list"]])
def test_first_commands_import_nothing_heavy(argv: list[str]) -> None:
    """`w2svqa --help` and `label --list` start in well under 2 s because they never import the
    heavy libraries (each is seconds to import); checked in a fresh interpreter."""
    code = (
        "import sys; from experiments.cli import main; main(sys.argv[1:]); "
        f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []", done.stdout[-500:]
