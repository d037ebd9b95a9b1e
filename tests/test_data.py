"""Data layer on tiny synthetic IDX files: MD5 checks, atomic writes, clear errors, safe unpickling."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from lib import data
from lib.data import DataError

SYNTHETIC = {
    "train-images-idx3-ubyte": np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28),
    "train-labels-idx1-ubyte": np.array([0, 1, 2, 3], dtype=np.uint8),
    "t10k-images-idx3-ubyte": np.full((2, 28, 28), 7, dtype=np.uint8),
    "t10k-labels-idx1-ubyte": np.array([5, 9], dtype=np.uint8),
}


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """A cache folder holding a valid synthetic 'mnist', whose MD5 table is patched to match it."""
    encoded = {f: data.encode_idx(a) for f, a in SYNTHETIC.items()}
    info = data.DatasetInfo("MNIST", "MNIST", {f: data.md5(b) for f, b in encoded.items()})
    monkeypatch.setitem(data.DATASETS, "mnist", info)
    data._LOADED.clear()
    folder = tmp_path / "MNIST" / "raw"
    for f, b in encoded.items():
        data.write_atomic(folder / f, b)
    yield tmp_path
    data._LOADED.clear()


def test_idx_round_trip():
    for array in SYNTHETIC.values():
        assert np.array_equal(data.decode_idx(data.encode_idx(array)), array)


def test_load_gives_uint8_images_and_int64_labels(synthetic):
    raw = data.load("mnist", synthetic)
    assert raw.train_images.dtype == torch.uint8 and raw.train_images.shape == (4, 28, 28)
    assert raw.test_labels.dtype == torch.int64 and raw.test_labels.tolist() == [5, 9]
    assert data.load("mnist", synthetic) is raw  # held in memory after the first load


def test_environment_variable_selects_the_cache(synthetic, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(synthetic))
    assert data.data_root() == synthetic
    data.verify("mnist")


def test_corrupt_file_names_the_file_and_the_fix(synthetic):
    path = synthetic / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataError) as err:
        data.load("mnist", synthetic)
    assert str(path) in str(err.value) and "python -m lib data fetch mnist" in str(err.value)
    assert "corrupt" in str(err.value)


def test_missing_file_names_the_file_and_the_fix(synthetic):
    path = synthetic / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.unlink()
    with pytest.raises(DataError, match="missing; run: python -m lib data fetch mnist") as err:
        data.verify("mnist", synthetic)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("cut", [2, 10, 100])
def test_truncated_or_malformed_idx_is_a_data_error_not_a_numpy_traceback(cut):
    encoded = data.encode_idx(SYNTHETIC["t10k-images-idx3-ubyte"])
    with pytest.raises(DataError):
        data.decode_idx(encoded[:cut], "file")
    with pytest.raises(DataError, match="magic"):
        data.decode_idx(b"\x00\x00\x09\x01" + encoded[4:], "file")


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match="valid names: mnist, fmnist"):
        data.verify("cifar")


def test_wrong_md5_never_reaches_the_final_name(tmp_path):
    with pytest.raises(DataError, match="MD5"):
        data._store("mnist", "t10k-labels-idx1-ubyte", b"not mnist", tmp_path)
    folder = tmp_path / "MNIST" / "raw"
    assert not folder.exists() or not any(folder.iterdir())


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        data.write_atomic(tmp_path / "file", b"payload")
    assert list(tmp_path.iterdir()) == []


def test_fetch_uses_the_debian_package_for_fashion_mnist(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    debian.mkdir()
    encoded = {f: data.encode_idx(a) for f, a in SYNTHETIC.items()}
    for f, b in encoded.items():
        (debian / f"{f}.gz").write_bytes(gzip.compress(b))
    monkeypatch.setattr(data, "FMNIST_DEBIAN_DIR", debian)
    monkeypatch.setitem(data.DATASETS, "fmnist", data.DatasetInfo("Fashion-MNIST", "FashionMNIST", {f: data.md5(b) for f, b in encoded.items()}))
    folder = data.fetch("fmnist", tmp_path / "cache", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.FILES)
    data.verify("fmnist", tmp_path / "cache")


def test_fetch_reports_every_failed_source(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FMNIST_DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(data, "_from_torchvision", lambda name, root: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError) as err:
        data.fetch("fmnist", tmp_path, progress=False)
    assert "Debian" in str(err.value) and "offline" in str(err.value)


def test_mnist_pickle_converts_bit_exactly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5)
    as_float = (images / 256).astype(np.float32)  # how the pickle stores pixels: k / 256
    obj = ((as_float[:3], labels[:3]), (as_float[3:4], labels[3:4]), (as_float[4:], labels[4:]))
    arrays = data.mnist_from_pickle(data.load_array_pickle(pickle.dumps(obj, protocol=2)))
    assert np.array_equal(arrays["train-images-idx3-ubyte"].reshape(4, 784), images[:4])
    assert np.array_equal(arrays["t10k-images-idx3-ubyte"].reshape(1, 784), images[4:])
    assert arrays["train-labels-idx1-ubyte"].tolist() == labels[:4].tolist()


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned",))


def test_restricted_unpickler_refuses_arbitrary_globals():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load_array_pickle(pickle.dumps(Exploit()))


@pytest.mark.skipif(not data.is_complete("mnist"), reason="MNIST not fetched (python -m lib data fetch)")
def test_real_mnist_files():
    raw = data.load("mnist")
    assert raw.train_images.shape == (60000, 28, 28) and raw.test_images.shape == (10000, 28, 28)
    assert torch.bincount(raw.train_labels).tolist()[:3] == [5923, 6742, 5958]
    assert torch.bincount(raw.test_labels).tolist()[:3] == [980, 1135, 1032]


def test_command_line_verify_and_errors(synthetic, capsys):
    from lib.__main__ import main

    assert main(["data", "verify", "mnist", "--root", str(synthetic)]) == 0
    assert "verified" in capsys.readouterr().out
    (synthetic / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert main(["data", "verify", "mnist", "--root", str(synthetic)]) == 1
    assert "missing; run: python -m lib data fetch mnist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "verify", "cifar"])
    assert "valid names: mnist, fmnist" in capsys.readouterr().err
    assert main(["train"]) == 2
