"""The installed package works away from the source tree: the wheel holds every file that lies
beside the code (the published numbers `evaluate` prints, the experiment YAMLs), and a wheel
installed into a fresh folder runs `w2svqa evaluate` from another folder (offline, no deps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datamodules", "experiments", "lightning_modules")
CACHES = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def _pip(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], cwd=cwd, env=env, check=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the copy of the source it was built from). Built from a copy, so that a stale
    `build/` in the checkout can neither add files nor hide missing ones."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=CACHES)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), ".", cwd=source)
    (built,) = (tmp / "dist").glob("w2svqa-*.whl")
    return built, source


@pytest.mark.slow
def test_the_wheel_holds_every_file_beside_the_code(wheel: tuple[Path, Path]) -> None:
    built, source = wheel
    names = set(zipfile.ZipFile(built).namelist())
    beside = sorted(
        p.relative_to(source).as_posix()
        for package in PACKAGES
        for p in (source / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert "experiments/reference/published.csv" in beside
    assert [f for f in beside if f not in names] == []


@pytest.mark.slow
def test_an_installed_wheel_evaluates_from_another_folder(
    wheel: tuple[Path, Path], tmp_path: Path
) -> None:
    built, _ = wheel
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(built), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "KoNViD_1k").mkdir(parents=True)
    (elsewhere / "KoNViD_1k" / "KoNViD_1k_mos.csv").write_text(
        "flickr_id,mos\n" + "".join(f"{i},{1 + i % 4}.5\n" for i in range(1, 6))
    )
    (elsewhere / "pred.csv").write_text("".join(f"{i}.mp4,{i % 4}\n" for i in range(1, 7)))
    # the installed package first on the path, the checkout nowhere on it
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import experiments.zero_shot as z; print(z.__file__); print(z.PUBLISHED)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, check=True,
                           capture_output=True, text=True).stdout  # fmt: skip
    assert str(REPO) not in where and where.count(str(site)) == 2
    command = [str(site / "bin" / "w2svqa"), "evaluate", "--predictions", "pred.csv",
               "--dataset", "konvid_1k", "--root", "KoNViD_1k", "--no_mlflow"]  # fmt: skip
    run = subprocess.run([sys.executable, *command], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    assert "5 of 5 labelled videos matched" in run.stdout
    assert "line 6 (6.mp4): no labelled video of that name" in run.stdout
    assert "| W2S student stage 3 (published) | 0.902 / 0.901 |" in run.stdout
    assert (elsewhere / "runs" / "evaluate" / "table.md").is_file()
