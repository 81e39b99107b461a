"""Datasets as in-memory tensors, batch loaders, sample images and ImageNet class names.

Where the data come from (first that applies; :mod:`advlib.datafiles` holds the search, the
downloads, the errors and the file formats):

1. the ``root`` argument;
2. the environment variable ``ADVLIB_DATA``;
3. a cache folder, ``~/.cache/advlib/data`` (or ``$XDG_CACHE_HOME/advlib/data``), into which
   torchvision downloads the data when the machine is online.

Layouts read as they are: MNIST in torchvision's raw layout (``MNIST/raw/*-idx?-ubyte``, plain or
``.gz``); CIFAR-10 as ``cifar10/{train,test}.npz`` (arrays ``x`` uint8 NHWC and ``y``) or
torchvision's ``cifar-10-batches-py``; images as ``images/<name>.jpg``.

Images are stored as ``uint8`` (N, C, H, W) and served as ``float32`` in [0, 1].

Every file is checked as it is read: a file that is corrupt, truncated or of the wrong shapes,
dtypes or label range raises ``ValueError`` naming it. Nothing in a data file is ever executed:
CIFAR-10's pickled batches are read by an unpickler that admits only the numpy arrays, lists, strings
and bytes the format holds, and ``.npz`` files are read with ``allow_pickle=False``.
Taught in chapter 00 (preliminaries).
"""
from __future__ import annotations

import io
import math
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

# re-exported: a loader's errors and roots belong to advlib.data's interface too
from .datafiles import (ENV_VAR, DataNotFoundError, check_arrays, data_roots, default_cache_root,  # noqa: F401
                        download_or_explain, is_online, not_found, read_cifar_batch, read_cifar_npz, read_idx,
                        reading)
from .distributed import shard_indices
from .utils import atomic_write, check_int, draw, get_device

MNIST_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first MNIST mirror
CIFAR_HOST = "www.cs.toronto.edu"

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SAMPLE_IMAGES = {
    # name -> (file under <root>/images, public URL used only when online)
    "pig": ("pig.jpg", "https://adversarial-ml-tutorial.org/introduction/pig.jpg"),
}


# ------------------------------------------------------------------------------------ datasets
@dataclass(eq=False)
class ImageData(torch.utils.data.Dataset):
    """Images stored as ``uint8`` (N, C, H, W) with ``int64`` labels; items served as float in [0, 1].

    ``len(ds)``, ``ds[i] -> (x, y)``, ``ds.tensors()`` gives all of it as float tensors on a device,
    ``ds.subset(n, seed)`` a seeded subset, and :class:`Loader` fast batches.
    """

    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]
    name: str = "data"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i].float().div_(255), self.labels[i]

    def __repr__(self) -> str:
        return f"ImageData({self.name}: {len(self)} images of shape {tuple(self.images.shape[1:])}, {len(self.classes)} classes)"

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def tensors(self, n: int | None = None, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default all) images as float in [0, 1] and their labels, on ``device``."""
        device = get_device() if device is None else device
        k = len(self) if n is None else min(n, len(self))
        return self.images[:k].to(device).float().div_(255), self.labels[:k].to(device)

    def subset(self, n: int | None = None, seed: int = 0, *, per_class: int | None = None) -> "ImageData":
        """A seeded random subset: ``n`` images, or ``per_class`` images of every class (balanced)."""
        g = torch.Generator().manual_seed(seed)
        if per_class is not None:
            check_int(per_class, "per_class", minimum=1)
            picks = []
            for c in range(len(self.classes)):
                idx = (self.labels == c).nonzero().flatten()
                if len(idx) < per_class:
                    raise ValueError(f"per_class={per_class} but class {c} has only {len(idx)} images")
                picks.append(idx[draw(torch.randperm, len(idx), generator=g)[:per_class]])
            idx = torch.cat(picks)
            idx = idx[draw(torch.randperm, len(idx), generator=g)]
        else:
            if n is None:
                raise ValueError("give n or per_class")
            check_int(n, "n", minimum=1)
            idx = draw(torch.randperm, len(self), generator=g)[: min(n, len(self))]
        return ImageData(self.images[idx], self.labels[idx], self.classes, f"{self.name}[subset]")

    def split(self, n_first: int, seed: int = 0) -> tuple["ImageData", "ImageData"]:
        """Shuffle with ``seed`` and split into the first ``n_first`` images and the rest."""
        check_int(n_first, "n_first", minimum=0)
        idx = draw(torch.randperm, len(self), generator=torch.Generator().manual_seed(seed))
        a, b = idx[:n_first], idx[n_first:]
        return (ImageData(self.images[a], self.labels[a], self.classes, f"{self.name}[:{n_first}]"),
                ImageData(self.images[b], self.labels[b], self.classes, f"{self.name}[{n_first}:]"))


class Loader:
    """Batches of an :class:`ImageData` as float tensors on a device, by slicing (no per-item work).

    Much faster than a ``DataLoader`` over single items for in-memory data; iterating again
    reshuffles (with a generator seeded once, so a run is repeatable). With ``shard=(rank, world_size)``
    each batch is the share of rank ``rank`` of the global batch of ``batch_size``
    (:func:`advlib.distributed.shard_indices`), for data-parallel training. With ``indices=True``
    each batch is ``(x, y, idx)``, ``idx`` the positions of its images in ``data`` (for an adversary
    that keeps something per example, :class:`advlib.adversaries.APART`).
    """

    def __init__(self, data: ImageData, batch_size: int = 128, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: torch.device | str | None = None,
                 shard: tuple[int, int] | None = None, indices: bool = False) -> None:
        self.data = data
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.indices = indices
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = get_device() if device is None else torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.shard = shard

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.data)
        order = draw(torch.randperm, n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shard is not None:
                idx = shard_indices(idx, *self.shard)
            x = self.data.images[idx].to(self.device, non_blocking=True).float().div_(255)
            y = self.data.labels[idx].to(self.device, non_blocking=True)
            yield (x, y, idx.to(self.device)) if self.indices else (x, y)


# ---------------------------------------------------------------------------------------- MNIST
def _find_mnist(root: Path, train: bool) -> tuple[Path, Path] | None:
    names = MNIST_FILES[train]
    for folder in (root / "MNIST" / "raw", root / "mnist" / "raw", root / "MNIST", root):
        found = []
        for n in names:
            for cand in (folder / n, folder / (n + ".gz")):
                if cand.is_file():
                    found.append(cand)
                    break
        if len(found) == 2:
            return found[0], found[1]
    return None


def mnist(train: bool = True, root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """MNIST (60k train / 10k test, 1x28x28) from the data root; downloads when online and allowed.
    """
    roots = data_roots(root)
    for r in roots:
        files = _find_mnist(r, train)
        if files:
            break
    else:
        expected = [f"MNIST/raw/{n}" for n in MNIST_FILES[train]]
        if not (download and is_online(MNIST_HOST)):
            raise not_found("MNIST", expected, roots)
        import torchvision

        cache = default_cache_root()
        download_or_explain(lambda: torchvision.datasets.MNIST(str(cache), train=train, download=True), "MNIST", expected, roots)
        files = _find_mnist(cache, train)
        if not files:
            raise not_found("MNIST", expected, roots)
    images, labels = read_idx(files[0]), read_idx(files[1])
    check_arrays(images, labels, (28, 28), len(MNIST_CLASSES), files[0], files[1])
    images = torch.from_numpy(images.copy()).unsqueeze(1)
    labels = torch.from_numpy(labels.astype(np.int64))
    return ImageData(images, labels, MNIST_CLASSES, f"MNIST-{'train' if train else 'test'}")


# ------------------------------------------------------------------------------------- CIFAR-10
def _cifar_from_batches(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = zip(*(read_cifar_batch(folder / n) for n in names))
    return np.concatenate(xs), np.concatenate(ys)


def cifar10(train: bool = True, root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """CIFAR-10 (50k train / 10k test, 3x32x32) from ``cifar10/{train,test}.npz`` or torchvision's layout.

    The offline ``train.npz`` of this project's data folder holds JPEG-degraded training images
    (about 5.8/255 mean absolute error); its test set is exact. See the data folder's README.
    """
    split = "train" if train else "test"
    roots = data_roots(root)
    arrays = None
    for r in roots:
        npz = r / "cifar10" / f"{split}.npz"
        if npz.is_file():
            arrays = read_cifar_npz(npz)
            break
        if (r / "cifar-10-batches-py" / ("data_batch_1" if train else "test_batch")).is_file():
            arrays = _cifar_from_batches(r / "cifar-10-batches-py", train)
            break
    if arrays is None:
        expected = [f"cifar10/{split}.npz  (arrays x: uint8 N,32,32,3; y: int64 N)"]
        hint = "(torchvision's cifar-10-batches-py folder works too.)"
        if not (download and is_online(CIFAR_HOST)):
            raise not_found("CIFAR-10", expected, roots, hint)
        import torchvision

        cache = default_cache_root()
        download_or_explain(lambda: torchvision.datasets.CIFAR10(str(cache), train=train, download=True), "CIFAR-10",
                  expected, roots)
        arrays = _cifar_from_batches(cache / "cifar-10-batches-py", train)
    x, y = arrays
    return ImageData(torch.from_numpy(x), torch.from_numpy(y), CIFAR10_CLASSES, f"CIFAR10-{split}")


def load(name: str, train: bool = True, root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """``load("mnist")`` or ``load("cifar10")``.
    """
    table = {"mnist": mnist, "cifar10": cifar10}
    if name.lower() not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    return table[name.lower()](train=train, root=root, download=download)


#: The seed of the book's evaluation images (chapter 07's subset, which the later chapters share).
EVAL_SEED = 2018


def eval_subset(name: str, n: int, *, device: torch.device | str | None = None,
                root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's evaluation images of ``name`` (``"mnist"`` or ``"cifar10"``): the first ``n`` test
    images of one permutation seeded with ``EVAL_SEED``, as ``(x, y)`` on ``device``. Every
    chapter evaluates on these, so two chapters that evaluate one model under one threat print the
    same number, and a smaller ``n`` is always the start of a larger one.

    Example: ``x, y = eval_subset("mnist", 1000)``
    """
    n = check_int(n, "n", minimum=1)
    return load(name, train=False, root=root).subset(n, seed=EVAL_SEED).tensors(device=device)


# --------------------------------------------------------------------------------- sample images
def sample_image(name: str = "pig", root: str | os.PathLike | None = None, download: bool = True,
                 size: int | None = None) -> torch.Tensor:
    """A sample photo as a float tensor (3, H, W) in [0, 1]; ``size`` resizes the short side and
    centre-crops to a square. Read from ``<root>/images/``, else fetched from its public URL when online.
    """
    from PIL import Image

    if not isinstance(name, str) or name not in SAMPLE_IMAGES:
        raise ValueError(f"name must be one of {sorted(SAMPLE_IMAGES)}, got {name!r}")
    fname, url = SAMPLE_IMAGES[name]
    roots = data_roots(root)
    blob = None
    for r in roots:
        if (r / "images" / fname).is_file():
            source = r / "images" / fname
            blob = source.read_bytes()
            break
    if blob is None:
        source = url
        if download and is_online(host=url.split("/")[2]):
            try:
                with urllib.request.urlopen(url, timeout=20) as resp:
                    blob = resp.read()
            except OSError as e:
                raise not_found(f"sample image {name!r}", [f"images/{fname}"], roots,
                               f"(The download from {url} failed: {e})") from e
        else:
            raise not_found(f"sample image {name!r}", [f"images/{fname}"], roots)
    with reading(source, "an image (JPEG, PNG, ...)"):
        img = Image.open(io.BytesIO(blob)).convert("RGB")
    if source == url:  # cache a download only once it is known to be an image
        atomic_write(default_cache_root() / "images" / fname, lambda tmp: tmp.write_bytes(blob))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
    if size is not None:
        from torchvision.transforms.functional import center_crop, resize

        x = center_crop(resize(x, size, antialias=True), [size, size]).clamp_(0, 1)
    return x


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download).
    """
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


# ------------------------------------------------------------------- synthetic 2-D problems (VAT)
@dataclass(eq=False)
class Synthetic2D:
    """A binary 2-D problem embedded linearly in ``dim`` dimensions (Miyato et al., 2016, section 4.1).

    ``x_train`` / ``x_test`` are (N, dim) float32 = ``points2d @ basis.T``, where ``basis`` (dim, 2)
    has orthonormal columns, so distances (and eps) are the same in the plane and in ``dim``-space;
    ``points_train`` / ``points_test`` are the 2-D originals and ``y_*`` the labels (long, 0/1);
    ``points_unlabelled`` / ``x_unlabelled`` more points of the same distribution, drawn without
    their labels (for semi-supervised training; empty unless asked for).
    :meth:`embed` maps 2-D points (e.g. a plotting grid) into the model's input space.
    """

    name: str
    points_train: torch.Tensor
    y_train: torch.Tensor
    points_test: torch.Tensor
    y_test: torch.Tensor
    basis: torch.Tensor
    points_unlabelled: torch.Tensor | None = None

    def embed(self, points: torch.Tensor | np.ndarray) -> torch.Tensor:
        """2-D points (N, 2) -> inputs (N, dim), float32, on the basis' device."""
        p = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points,
                            dtype=self.basis.dtype, device=self.basis.device)
        return p @ self.basis.T

    @property
    def x_train(self) -> torch.Tensor:
        return self.embed(self.points_train)

    @property
    def x_test(self) -> torch.Tensor:
        return self.embed(self.points_test)

    @property
    def x_unlabelled(self) -> torch.Tensor:
        if self.points_unlabelled is None:
            return self.embed(torch.zeros(0, 2))
        return self.embed(self.points_unlabelled)

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    def to(self, device: torch.device | str) -> "Synthetic2D":
        """A copy with every tensor on ``device``."""
        return Synthetic2D(self.name, *(t.to(device) for t in (self.points_train, self.y_train, self.points_test,
                                                               self.y_test, self.basis)),
                           None if self.points_unlabelled is None else self.points_unlabelled.to(device))

    def __repr__(self) -> str:
        unlabelled = len(self.x_unlabelled)
        return (f"Synthetic2D({self.name}: {len(self.y_train)} train / {len(self.y_test)} test"
                f"{f' / {unlabelled} unlabelled' if unlabelled else ''} points, 2-D embedded in {self.dim} dimensions)")


def _moons(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles: class 0 the upper arc of the unit circle, class 1 the lower arc
    shifted to (1, 0.5); ``n // 2`` points each (plus one for class 0 if ``n`` is odd)."""
    n0 = n - n // 2
    t0, t1 = rng.uniform(0, np.pi, n0), rng.uniform(0, np.pi, n // 2)
    pts = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)]])
    return pts + noise * rng.standard_normal(pts.shape), np.repeat([0, 1], [n0, n // 2])


def _circles(n: int, rng: np.random.Generator, noise: float, factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: class 0 of radius 1, class 1 of radius ``factor``."""
    n0 = n - n // 2
    t0, t1 = rng.uniform(0, 2 * np.pi, n0), rng.uniform(0, 2 * np.pi, n // 2)
    pts = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], factor * np.c_[np.cos(t1), np.sin(t1)]])
    return pts + noise * rng.standard_normal(pts.shape), np.repeat([0, 1], [n0, n // 2])


SYNTHETIC_NOISE = {"moons": 0.1, "circles": 0.05}


def synthetic_2d(name: str = "moons", *, n_train: int = 16, n_test: int = 1000, dim: int = 100,
                 noise: float | None = None, seed: int = 0, n_unlabelled: int = 0,
                 device: torch.device | str | None = None) -> Synthetic2D:
    """The synthetic binary problems of Miyato et al. (2016): ``"moons"`` or ``"circles"`` in 2-D,
    ``n_train`` training and ``n_test`` test points (classes balanced), Gaussian noise of standard
    deviation ``noise`` (default 0.1 for moons, 0.05 for circles), embedded in ``dim`` dimensions by a
    random orthonormal basis, and ``n_unlabelled`` more points of the same distribution whose labels
    are dropped (semi-supervised training, chapter 06). Everything is drawn from ``seed`` (train,
    test, basis and unlabelled points from independent streams, so asking for unlabelled points
    changes none of the others).

    Example: ``ds = synthetic_2d("moons"); fit(model, (ds.x_train, ds.y_train), ...)``
    """
    makers = {"moons": _moons, "circles": _circles}
    if name not in makers:
        raise ValueError(f"name must be one of {sorted(makers)}, got {name!r}")
    check_int(n_train, "n_train", minimum=2)
    check_int(n_test, "n_test", minimum=2)
    check_int(dim, "dim", minimum=2)
    check_int(n_unlabelled, "n_unlabelled", minimum=0)
    noise = SYNTHETIC_NOISE[name] if noise is None else float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng_train, rng_test, rng_basis, rng_unlabelled = (np.random.default_rng([seed, k]) for k in range(4))
    p_train, y_train = makers[name](n_train, rng_train, noise)
    p_test, y_test = makers[name](n_test, rng_test, noise)
    basis, _ = np.linalg.qr(rng_basis.standard_normal((dim, 2)))
    device = get_device() if device is None else device
    f = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
    g = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)
    p_unlabelled = f(makers[name](n_unlabelled, rng_unlabelled, noise)[0]) if n_unlabelled else None
    return Synthetic2D(name, f(p_train), g(y_train), f(p_test), g(y_test), f(basis), p_unlabelled)
