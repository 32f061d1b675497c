"""Image datasets from files: one `.npz` (`source = "npz"`) or an ImageFolder tree
(`source = "folder"`), checked before any training, with one line naming the file and what is
wrong. Files are data, never code: arrays are read with allow_pickle=False.

Both give float32 images (N, C, H, W) in [0, 1] with C = 1 or 3, integer labels 0..K-1, and a
content digest (MD5 of the files) for the data fingerprint. A folder is decoded once and cached in
the data root, revalidated against its files' sizes and times.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ablate.data.mnist_rot import md5_file
from ablate.errors import DataError

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _images(x: np.ndarray, where: str) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) uint8 0-255 or float 0-1 -> float32 (N, C, H, W) in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(
            f"{where}: expected images N x H x W or N x C x H x W with C = 1 or 3, found shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where}: expected uint8 (0-255) or float (0-1) pixels, found {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: expected finite pixels, found NaN or inf")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{where}: expected float pixels in [0, 1], found {x.min():.4g} to {x.max():.4g}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: expected integer labels of shape (N,), found {y.dtype} of shape {y.shape}")
    return y.astype(np.int64)


def check_classes(y_train: np.ndarray, y_test: np.ndarray, where: str) -> int:
    """K, the number of classes: labels must be 0..K-1 and every class must be in the training set."""
    low = int(min(y_train.min(initial=0), y_test.min(initial=0)))
    classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if low < 0:
        raise DataError(f"{where}: expected labels 0..K-1, found {low}")
    absent = sorted(set(range(classes)) - set(np.unique(y_train).tolist()))
    if absent:
        raise DataError(
            f"{where}: expected every class 0..{classes - 1} in the training set, "
            f"missing {', '.join(map(str, absent[:10]))}"
        )
    return classes


def fit_size(x: torch.Tensor, size: int | None, where: str) -> torch.Tensor:
    """Square images at `size` (antialiased bilinear resize when they differ); DataError for
    non-square images without a size."""
    h, w = x.shape[-2:]
    if size is None:
        if h != w:
            raise DataError(
                f"{where}: expected square images, found {h}x{w}: set [data] size = S to resize them"
            )
        return x
    if (h, w) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(
        0, 1
    )


def read_npz(path: Path, test_split: str = "test") -> tuple:
    """(x_train, y_train, x_test, y_test, content digest) of a .npz; the test arrays are x_val /
    y_val when test_split is "val"."""
    if not path.is_file():
        raise DataError(f"{path}: expected an .npz file, found none")
    wanted = ("x_train", "y_train", f"x_{test_split}", f"y_{test_split}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in wanted if name not in data.files]
            if missing:
                raise DataError(f"{path}: expected arrays {', '.join(wanted)}, missing {', '.join(missing)}")
            arrays = {}
            for name in wanted:
                try:
                    arrays[name] = data[name]
                except ValueError as error:  # an object array: it would unpickle code
                    raise DataError(
                        f"{path}: {name}: refused ({error}); files are data, never code"
                    ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path}: expected an .npz file, found unreadable content ({error})") from None
    x_tr, y_tr = (
        _images(arrays["x_train"], f"{path}: x_train"),
        _labels(arrays["y_train"], f"{path}: y_train"),
    )
    x_te = _images(arrays[f"x_{test_split}"], f"{path}: x_{test_split}")
    y_te = _labels(arrays[f"y_{test_split}"], f"{path}: y_{test_split}")
    for x, y, split in ((x_tr, y_tr, "train"), (x_te, y_te, test_split)):
        if len(x) != len(y):
            raise DataError(
                f"{path}: expected as many x_{split} images as y_{split} labels, found {len(x)} and {len(y)}"
            )
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"{path}: expected train and test images of one shape, found {tuple(x_tr.shape[1:])} and "
            f"{tuple(x_te.shape[1:])}"
        )
    return x_tr, y_tr, x_te, y_te, md5_file(path)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: image files} of root/<split>/<class>/*."""
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder of class folders, found none")
    classes = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"{class_dir}: expected images ({', '.join(IMAGE_SUFFIXES)}), found an empty class folder"
            )
        classes[class_dir.name] = files
    if not classes:
        raise DataError(f"{folder}: expected class folders (root/<split>/<class>/*.png), found none")
    return classes


def _decode(files: list[Path], size: int | None) -> torch.Tensor:
    """Images of `files` as (N, C, H, W) in [0, 1]: grey when every file is, else RGB."""
    from PIL import Image

    images, modes = [], set()
    for path in files:
        try:
            with Image.open(path) as image:
                modes.add("L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB")
                images.append(image.convert("RGB"))
        except Exception as error:
            raise DataError(
                f"{path}: expected an image file, found unreadable content ({type(error).__name__})"
            ) from None
    grey = modes == {"L"}
    out = []
    for path, image in zip(files, images):
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        x = x[:, :1] if grey else x
        out.append(fit_size(x, size, str(path)) if size else x)
    shapes = {tuple(x.shape[1:]) for x in out}
    if len(shapes) > 1:
        raise DataError(
            f"{files[0].parent.parent}: expected images of one size, found {sorted(shapes)[:3]}: "
            "set [data] size"
        )
    return torch.cat(out)


def _stamps(files: list[Path], root: Path) -> dict:
    return {str(p.relative_to(root)): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}


def read_folder(root: Path, test_split: str, size: int | None, cache_root: Path) -> tuple:
    """(x_train, y_train, x_test, y_test, content digest) of an ImageFolder tree
    root/train/<class>/*, root/<test_split>/<class>/*; classes are the train folder names, sorted.
    Decoded once into cache_root, rebuilt when a file's size or time changed."""
    train, test = _class_files(root / "train"), _class_files(root / test_split)
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise DataError(
            f"{root / test_split}: expected the classes of {root / 'train'}, found {', '.join(unknown)}"
        )
    names = sorted(train)
    train_files = [p for c in names for p in train[c]]
    test_files = [p for c in names for p in test.get(c, [])]
    files = train_files + test_files
    stamps = _stamps(files, root)
    key = hashlib.sha256(f"{root.resolve()}|{test_split}|{size}".encode()).hexdigest()[:16]
    cache = cache_root / "folders" / f"{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if json.loads(str(data["stamps"])) == stamps:
                return tuple(torch.from_numpy(data[n]) for n in NPZ_ARRAYS) + (str(data["content"]),)
        print(f"ablate: cache {cache} is out of date ({root} changed); rebuilding it")
    y_tr = np.array([i for i, c in enumerate(names) for _ in train[c]], dtype=np.int64)
    y_te = np.array([i for i, c in enumerate(names) for _ in test.get(c, [])], dtype=np.int64)
    x_tr, x_te = _decode(train_files, size), _decode(test_files, size)
    digest = hashlib.md5()
    for path in files:
        digest.update(f"{path.relative_to(root)}\0{md5_file(path)}\0".encode())
    content = digest.hexdigest()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=x_tr.numpy(), y_train=y_tr, x_test=x_te.numpy(), y_test=y_te,
             stamps=json.dumps(stamps), content=content)  # fmt: skip
    os.replace(tmp, cache)
    return x_tr, torch.from_numpy(y_tr), x_te, torch.from_numpy(y_te), content
