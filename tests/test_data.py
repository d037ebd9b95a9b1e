"""Data layer on tiny synthetic IDX files: MD5 checks, atomic writes, clear errors, safe unpickling."""
import gzip
import io
import pickle

import numpy as np
import pytest
import torch

from lib import data
from lib.cli_data import main
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


def test_truncated_file_on_disk_is_a_data_error(synthetic, monkeypatch):
    path = synthetic / "MNIST" / "raw" / "train-images-idx3-ubyte"
    cut = path.read_bytes()[:-100]
    path.write_bytes(cut)
    with pytest.raises(DataError, match="corrupt or partial"):
        data.load("mnist", synthetic)
    table = dict(data.DATASETS["mnist"].md5, **{path.name: data.md5(cut)})  # even if its MD5 were expected
    monkeypatch.setitem(data.DATASETS, "mnist", data.DatasetInfo("MNIST", "MNIST", table))
    with pytest.raises(DataError, match="header promises") as err:
        data.load("mnist", synthetic)
    assert str(path) in str(err.value)


def test_images_and_labels_of_different_lengths_are_a_data_error(synthetic, monkeypatch):
    path = synthetic / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    three = data.encode_idx(np.array([1, 2, 3], dtype=np.uint8))
    path.write_bytes(three)
    table = dict(data.DATASETS["mnist"].md5, **{path.name: data.md5(three)})
    monkeypatch.setitem(data.DATASETS, "mnist", data.DatasetInfo("MNIST", "MNIST", table))
    with pytest.raises(DataError, match="expected \\(N, 28, 28\\) and \\(N,\\)"):
        data.load("mnist", synthetic)


def test_load_never_fetches(tmp_path):
    with pytest.raises(DataError, match="missing; run: python -m lib data fetch fmnist"):
        data.load("fmnist", tmp_path)
    assert list(tmp_path.iterdir()) == []


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


def test_fetch_does_nothing_when_the_cache_is_complete(synthetic, monkeypatch):
    monkeypatch.setattr(data, "_from_mnist_wheel", lambda root: pytest.fail("no source should be used"))
    assert data.fetch("mnist", synthetic, progress=False) == synthetic / "MNIST" / "raw"


def test_torchvision_fallback_stores_only_files_with_the_right_md5(synthetic, monkeypatch):
    folder = synthetic / "MNIST" / "raw"
    for path in folder.iterdir():
        path.unlink()

    def download(name, where):  # stands in for torchvision: the four files, the test images corrupt
        raw = where / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for file, array in SYNTHETIC.items():
            (raw / file).write_bytes(data.encode_idx(array))
        (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00" * 20)

    monkeypatch.setattr(data, "_torchvision_download", download)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte from this source has MD5"):
        data._from_torchvision("mnist", synthetic)
    assert sorted(p.name for p in folder.iterdir()) == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert sorted(p.name for p in synthetic.iterdir()) == ["MNIST"]  # the scratch download is gone
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is missing"):
        data.verify("mnist", synthetic)


def test_mnist_pickle_converts_bit_exactly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5)
    as_float = (images / 256).astype(np.float32)  # how the pickle stores pixels: k / 256
    obj = ((as_float[:3], labels[:3]), (as_float[3:4], labels[3:4]), (as_float[4:], labels[4:]))
    arrays = data.mnist_from_pickle(data.load_array_pickle(pickle.dumps(obj, protocol=4)))
    assert np.array_equal(arrays["train-images-idx3-ubyte"].reshape(4, 784), images[:4])
    assert np.array_equal(arrays["t10k-images-idx3-ubyte"].reshape(1, 784), images[4:])
    assert arrays["train-labels-idx1-ubyte"].tolist() == labels[:4].tolist()


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned",))


def test_restricted_unpickler_refuses_arbitrary_globals():
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load os.system"):
        data.load_array_pickle(pickle.dumps(Exploit()))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):  # Python 3 protocol 2 pickles bytes via _codecs
        data.load_array_pickle(pickle.dumps(np.zeros(3), protocol=2))


def test_restricted_unpickler_resolves_the_numpy_1_name_of_reconstruct():
    unpickler = data._ArrayUnpickler(io.BytesIO(b""))
    assert callable(unpickler.find_class("numpy.core.multiarray", "_reconstruct"))  # as in the MNIST pickle


@pytest.mark.skipif(not data.is_complete("mnist"), reason="MNIST not fetched (python -m lib data fetch mnist)")
def test_real_mnist_files():
    raw = data.load("mnist")
    assert raw.train_images.shape == (60000, 28, 28) and raw.test_images.shape == (10000, 28, 28)
    assert torch.bincount(raw.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(raw.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_command_line_verify_and_errors(synthetic, capsys):
    assert main(["verify", "mnist", "--root", str(synthetic)]) == 0
    assert "verified" in capsys.readouterr().out
    (synthetic / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert main(["verify", "mnist", "--root", str(synthetic)]) == 1
    assert "missing; run: python -m lib data fetch mnist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["verify", "cifar"])
    assert "valid names: mnist, fmnist" in capsys.readouterr().err
