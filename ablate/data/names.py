"""The data layer's allowed values, torch-free: the study schema reads them from here, and the
modules that implement each one (sources, files, augment) check against them."""

from __future__ import annotations

SOURCES = ("mnist-rot", "mnist", "embedded", "npz", "folder")
FILE_SOURCES = ("npz", "folder")  # a user's images, from [data] path
SUBSETS = ("first", "stratified")  # [data].subset: how limit_train / limit_test choose digits
SPLITS = ("test", "val")  # [data].test_split: the arrays (or folder) the test error is measured on
PADS = ("symmetric", "right-bottom")  # [data].pad: where pad_to adds its zeros
# [train].augment: "rotation" turns each image by a fresh angle per step; "paper" is the seed
# paper's pipeline (augment.paper_augment): upscale x3, rotate, flip, downscale
AUGMENTS = ("none", "rotation", "paper")
BUILT_IN_SHAPE = (1, 28, 10)  # (channels, image size, classes) of every built-in source


def file_settings_problem(source: str, path, size: int | None, test_split: str) -> str | None:
    """What is wrong with [data] path / size / test_split for this source (None when nothing): a
    path for the file sources and only for them; size and test_split only with them."""
    if (source in FILE_SOURCES) != (path is not None):
        return (
            f"expected path = FILE for the npz and folder sources, and only for them, found path "
            f"{path!r} with source {source!r}"
        )
    if source not in FILE_SOURCES and (size is not None or test_split != "test"):
        return f"expected size and test_split only with the npz and folder sources, found {source!r}"
    return None
