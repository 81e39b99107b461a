"""Data roots, offline layouts, subsets, loaders and the missing-data error."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch

from advlib import data
from conftest import shared_data_root


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture
def fake_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(30) % 10)  # gz works too
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "test.npz", x=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             y=np.arange(20) % 10, classes=np.array(data.CIFAR10_CLASSES))
    return tmp_path


def test_reads_raw_mnist_layout_from_argument(fake_root, monkeypatch):
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    ds = data.mnist(train=False, root=fake_root, download=False)
    assert len(ds) == 30 and ds.shape == (1, 28, 28) and ds.images.dtype == torch.uint8
    x, y = ds.tensors(device="cpu")
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(y, torch.arange(30) % 10)
    assert torch.allclose(x * 255, ds.images.float())


def test_env_var_is_second_in_line(fake_root, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ADVLIB_DATA", str(fake_root))
    empty = tmp_path_factory.mktemp("empty")
    assert data.data_roots(empty)[:2] == [empty, fake_root]
    assert len(data.mnist(train=False, root=empty, download=False)) == 30


def test_cifar_npz_layout(fake_root):
    ds = data.cifar10(train=False, root=fake_root, download=False)
    assert ds.shape == (3, 32, 32) and len(ds) == 20 and ds.classes[0] == "airplane"


def test_missing_data_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "is_online", lambda *a, **k: False)
    for load in (data.mnist, data.cifar10):
        with pytest.raises(data.DataNotFoundError, match="ADVLIB_DATA") as err:
            load(train=True, root=tmp_path, download=True)
        assert "<root>/" in str(err.value)
    with pytest.raises(FileNotFoundError, match="MNIST/raw/train-images-idx3-ubyte"):
        data.mnist(train=True, root=tmp_path, download=False)
    with pytest.raises(data.DataNotFoundError, match="images/pig.jpg"):
        data.sample_image("pig", root=tmp_path)


def test_is_online_never_hangs():
    import time
    t = time.time()
    data.is_online("10.255.255.1", 9, timeout=0.5)  # unroutable: must give up on time
    assert time.time() - t < 3


def test_corrupt_idx_raises(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10))
    with pytest.raises(ValueError, match="truncated"):
        data.mnist(train=False, root=tmp_path, download=False)


def test_subsets_are_seeded_and_balanced(fake_root):
    ds = data.mnist(train=False, root=fake_root, download=False)
    a, b = ds.subset(10, seed=3), ds.subset(10, seed=3)
    assert torch.equal(a.images, b.images) and len(a) == 10
    assert not torch.equal(ds.subset(10, seed=4).labels, a.labels) or not torch.equal(ds.subset(10, seed=4).images, a.images)
    bal = ds.subset(per_class=2, seed=0)
    assert torch.equal(torch.bincount(bal.labels, minlength=10), torch.full((10,), 2))
    with pytest.raises(ValueError, match="per_class"):
        ds.subset(per_class=5)
    first, rest = ds.split(7, seed=0)
    assert len(first) == 7 and len(rest) == 23


def test_loader_batches(fake_root):
    ds = data.mnist(train=False, root=fake_root, download=False)
    ld = data.Loader(ds, batch_size=8, shuffle=True, seed=0, device="cpu")
    batches = list(ld)
    assert len(ld) == 4 == len(batches) and batches[-1][0].shape == (6, 1, 28, 28)
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(seen.sort().values, ds.labels.sort().values)
    assert len(data.Loader(ds, 8, drop_last=True)) == 3
    with pytest.raises(ValueError, match="batch_size"):
        data.Loader(ds, 0)


def test_bad_names():
    with pytest.raises(ValueError, match="name"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="name"):
        data.sample_image("cat")


def test_imagenet_class_names_offline():
    names = data.imagenet_classes()
    assert len(names) == 1000 and names[341] == "hog" and names[404] == "airliner"


@pytest.mark.skipif(shared_data_root() is None, reason="offline data folder not present")
def test_offline_copies_load_as_they_are():
    root = shared_data_root()
    test = data.mnist(train=False, root=root, download=False)
    assert len(test) == 10000 and test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    cifar = data.cifar10(train=False, root=root, download=False)
    assert len(cifar) == 10000 and cifar.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    pig = data.sample_image("pig", root=root)
    assert pig.shape == (3, 400, 400) and 0 <= pig.min() and pig.max() <= 1
    assert data.sample_image("pig", root=root, size=224).shape == (3, 224, 224)


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    """Online by the socket check, but the mirror fails: still our error, not torchvision's traceback."""
    import torchvision

    def broken(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    monkeypatch.setenv("ADVLIB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "is_online", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets, "MNIST", broken)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", broken)
    for load in (data.mnist, data.cifar10):
        with pytest.raises(data.DataNotFoundError, match="ADVLIB_DATA") as err:
            load(train=True, root=tmp_path)
        assert "download failed" in str(err.value)
