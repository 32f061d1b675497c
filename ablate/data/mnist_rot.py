"""The MNIST-rot benchmark files (Larochelle et al. 2007): parsing, checksums, download, and a
cache that knows which files it was built from.

`read_mnist_rot(root)` returns the arrays of the two `.amat` files, taken from the extracted
files when both are in `root`, else from the zip (MD5-checked, downloaded when missing). The
arrays are cached in `root/mnist_rot_v1.npz` together with each source file's size, mtime and
MD5; the cache is rebuilt, with a one-line notice, when a source file in `root` changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ablate.errors import DataError

MNIST_ROT_URL = "http://www.iro.umontreal.ca/~lisa/icml2007data/mnist_rotation_new.zip"
MNIST_ROT_ZIP = "mnist_rotation_new.zip"
MNIST_ROT_MD5 = "0f9a947ff3d30e95cd685462cbf3b847"
MNIST_ROT_TRAIN = "mnist_all_rotation_normalized_float_train_valid.amat"
MNIST_ROT_TEST = "mnist_all_rotation_normalized_float_test.amat"
MNIST_ROT_CACHE = "mnist_rot_v1.npz"

PIXELS = 28 * 28
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_amat(source: str | Path | io.TextIOBase, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a Larochelle ``.amat`` file: one row per digit, 784 floats in [0, 1] then the label.

    Returns (x, y): x (N, 784) float32 in [0, 1], y (N,) int64 in 0..9. Raises DataError naming the
    file and the first bad row (1-based) for truncated rows, NaNs, bad pixels or bad labels.
    """
    import pandas as pd

    name = name or str(source)
    try:  # pandas streams the file itself: no copy of a ~1 GB text in memory
        table = pd.read_csv(
            source, sep=r"\s+", header=None, dtype=np.float64, engine="c", skip_blank_lines=True
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: expected rows of {PIXELS + 1} numbers, found an empty file") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{name}: expected rows of {PIXELS + 1} numbers; {str(error).strip()}") from None
    values = table.to_numpy()
    if values.shape[1] != PIXELS + 1:
        raise DataError(
            f"{name}: expected {PIXELS + 1} numbers per row (784 pixels + label), found {values.shape[1]}"
        )
    missing = np.isnan(values)
    bad = missing.any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        # pandas pads a short row with NaN: a NaN run up to the row's end means a truncated row
        present = int(np.argmax(missing[row]))
        truncated = missing[row, present:].all()
        what = f"{present} numbers (truncated row?)" if truncated else "a NaN"
        raise DataError(f"{name}: row {row + 1}: expected {PIXELS + 1} numbers, found {what}")
    x, labels = values[:, :PIXELS], values[:, PIXELS]
    bad = (x < -1e-6).any(axis=1) | (x > 1 + 1e-6).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{name}: row {row + 1}: expected pixels in [0, 1], found "
            f"min {x[row].min():.4g}, max {x[row].max():.4g}"
        )
    bad = (labels != np.round(labels)) | (labels < 0) | (labels > 9)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{name}: row {row + 1}: expected a label in 0..9, found {labels[row]:g}")
    return np.clip(x, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"mnist-rot: expected {target} (or the two extracted .amat files beside it); it is "
            f"missing and the download from {url} failed ({error.__class__.__name__}): "
            f"download it on a connected machine and copy it there"
        ) from None
    os.replace(tmp, target)


def _sources(root: Path) -> list[Path]:
    """The files the arrays come from: both extracted .amat files when present, else the zip."""
    extracted = [root / MNIST_ROT_TRAIN, root / MNIST_ROT_TEST]
    return extracted if all(p.exists() for p in extracted) else [root / MNIST_ROT_ZIP]


def _stamp(path: Path, md5: str | None = None) -> dict:
    """What identifies a source file: size, mtime (ns) and MD5 (computed when not given)."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5 or md5_file(path)}


def _stale_reason(stamps: dict, root: Path) -> str | None:
    """Why a cache built from `stamps` ({file name: stamp}) no longer matches the files in `root`,
    or None when it still does (or when none of its sources is left to compare with)."""
    sources = _sources(root)
    present = [p for p in sources if p.exists()]
    if not present:
        return None  # only the cache is left: nothing to disagree with
    if sorted(p.name for p in sources) != sorted(stamps):
        return f"it was built from {', '.join(sorted(stamps)) or 'unrecorded files'}, not {present[0].name}"
    for path in present:
        old, stat = stamps[path.name], path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (old["size"], old["mtime_ns"]) and md5_file(path) != old[
            "md5"
        ]:
            return f"{path.name} changed since the cache was built"
    return None


def _read_cache(cache: Path, root: Path) -> tuple[dict, str] | None:
    """(arrays, checksum) from a cache that matches its sources; None (and the cache removed, with a
    notice) when it is unreadable or stale."""
    if not cache.exists():
        return None
    try:
        with np.load(cache) as data:
            arrays = {name: data[name] for name in ARRAYS}
            checksum = str(data["checksum"])
            stamps = json.loads(str(data["sources"])) if "sources" in data.files else {}
    except Exception as error:  # unreadable or partial cache: rebuild it from the raw files
        print(f"ablate: cache {cache} is unreadable ({type(error).__name__}); rebuilding it")
        cache.unlink(missing_ok=True)
        return None
    reason = _stale_reason(stamps, root)
    if reason is not None:
        print(f"ablate: cache {cache} is out of date ({reason}); rebuilding it")
        cache.unlink(missing_ok=True)
        return None
    return arrays, checksum


def _parse_sources(root: Path) -> tuple[dict, str, dict]:
    """(arrays, checksum, stamps) parsed from the extracted files or the verified zip."""
    sources = _sources(root)
    if len(sources) == 2:
        md5s = [md5_file(p) for p in sources]
        checksum = hashlib.md5("".join(md5s).encode()).hexdigest()
        (x_tr, y_tr), (x_te, y_te) = (parse_amat(p) for p in sources)
        stamps = {p.name: _stamp(p, md5) for p, md5 in zip(sources, md5s)}
    else:
        zip_path = sources[0]
        if not zip_path.exists():
            _download(MNIST_ROT_URL, zip_path)
        checksum = md5_file(zip_path)
        if checksum != MNIST_ROT_MD5:
            raise DataError(
                f"{zip_path}: expected MD5 {MNIST_ROT_MD5}, found {checksum} "
                f"(corrupt or partial download: delete it and retry)"
            )
        with zipfile.ZipFile(zip_path) as archive:
            members = {Path(n).name: n for n in archive.namelist()}
            parsed = []
            for wanted in (MNIST_ROT_TRAIN, MNIST_ROT_TEST):
                if wanted not in members:
                    raise DataError(f"{zip_path}: expected a member {wanted}, found {sorted(members)}")
                with archive.open(members[wanted]) as handle:
                    parsed.append(parse_amat(io.TextIOWrapper(handle), name=f"{zip_path}:{wanted}"))
        (x_tr, y_tr), (x_te, y_te) = parsed
        stamps = {zip_path.name: _stamp(zip_path, checksum)}
    return dict(zip(ARRAYS, (x_tr, y_tr, x_te, y_te))), checksum, stamps


def read_mnist_rot(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """MNIST-rot from `root`: x_train (12000, 784), y_train, x_test (50000, 784), y_test and the
    source files' checksum; through the cache when it still matches its source files."""
    cache = root / MNIST_ROT_CACHE
    cached = _read_cache(cache, root)
    if cached is None:
        arrays, checksum, stamps = _parse_sources(root)
        root.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays, checksum=checksum, sources=json.dumps(stamps))
        os.replace(tmp, cache)
    else:
        arrays, checksum = cached
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], checksum
