"""Sentences as token sequences: the offline sentiment corpus, a tokeniser, a vocabulary and padded
batches. Chapter 03 (:ref:`ch-arae`) trains its adversarially regularised autoencoders on them.

The corpus is the ground truth of the VADER study (Hutto & Gilbert 2014): 23,703 English sentences
(movie and product review snippets, editorial sentences, tweets), each with the mean sentiment
rating of 20 or more human raters on a scale from -4 to +4. It is read through the data root like
the image data (``root`` argument, then ``$ADVLIB_DATA``, then the cache folder), from
``<root>/text/sentiment/*_GroundTruth.txt``. Missing and online, it is downloaded into the cache
folder from its public source, the source distribution of the PyPI package ``vaderSentiment`` 3.3.2
(MIT licence), and every file is checked against its SHA-256 (:func:`download_sentiment_corpus`);
offline, the error names the files.

A sentence becomes the token ids ``w_1 .. w_T`` followed by ``<eos>``; the decoder reads ``<bos>``
then ``w_1 .. w_T`` and predicts ``w_1 .. w_T, <eos>`` (teacher forcing).
"""
from __future__ import annotations

import hashlib
import html
import http.client
import io
import math
import operator
import os
import random
import re
import tarfile
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Iterator, Sequence

import torch

from . import data as _data
from .datafiles import data_roots, not_found, reading
from .utils import atomic_write, check_int, check_nonnegative

SENTIMENT_FILES = {
    # source name -> file under <root>/text/sentiment
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}

SENTIMENT_SHA256 = {
    # file under <root>/text/sentiment -> its SHA-256 (the same in the offline copy and the public source)
    "movieReviewSnippets_GroundTruth.txt": "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    "amazonReviewSnippets_GroundTruth.txt": "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
    "nytEditorialSnippets_GroundTruth.txt": "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
    "tweets_GroundTruth.txt": "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f",
    "LICENSE-vaderSentiment.txt": "74cfe41cdbf7f6925aeb4c18c148ec8db042540edb6739fd81069aa4e3c8b118",  # MIT
}

# The public source of the corpus: the source distribution (sdist) of vaderSentiment 3.3.2 on PyPI.
# Its ground-truth files sit in the archive additional_resources/hutto_ICWSM_2014.tar.gz inside it.
VADER_SDIST_URL = ("https://files.pythonhosted.org/packages/77/8c/"
                   "4a48c10a50f750ae565e341e697d74a38075a3e43ff0df6f1ab72e186902/vaderSentiment-3.3.2.tar.gz")
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_MEMBERS = {
    # file under <root>/text/sentiment -> (member of VADER_INNER_ARCHIVE, or None for the sdist itself)
    **{name: ("hutto_ICWSM_2014/" + name) for name in SENTIMENT_FILES.values()},
    "LICENSE-vaderSentiment.txt": None,  # the sdist's vaderSentiment-3.3.2/LICENSE.txt
}
_VADER_LICENSE = "vaderSentiment-3.3.2/LICENSE.txt"
_MAX_SDIST_BYTES = 32 << 20  # the real sdist is 2.5 MB; a larger answer is not it
_MAX_MEMBER_BYTES = 16 << 20  # the largest member read is 2.3 MB

RATING_SCALE = (-4.0, 4.0)  # the raters' scale: a mean rating lies in it

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't|[.,!?;:()\-\"']")


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words, numbers and punctuation marks: ``"It's GREAT!"`` -> ``["it's", "great", "!"]``.

    HTML entities are unescaped first (``&amp;`` -> ``&``); characters outside the pattern (``&``, ``#``,
    ``@``, emoji) are dropped.
    """
    text = html.unescape(sentence).lower().replace("''", '"').replace("`", "'")
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Sentence:
    """One rated sentence: its ``tokens``, the mean human ``rating`` (-4 .. +4) and its ``source``
    (``movie``, ``amazon``, ``nyt`` or ``tweets``). ``label`` is 1 for positive, 0 for negative.
    """

    tokens: tuple[str, ...]
    rating: float
    source: str

    @property
    def label(self) -> int:
        return int(self.rating > 0)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def sentiment_sentences(root: str | None = None, sources: Iterable[str] | None = None,
                        download: bool = True) -> list[Sentence]:
    """All sentences of the sentiment corpus (or of the ``sources`` named), tokenised, in file order.

    When the files are in no data root and ``download`` is true and the machine is online, the corpus
    is downloaded into the cache folder first (:func:`download_sentiment_corpus`: the sdist of
    ``vaderSentiment`` 3.3.2 from PyPI, every file checked against ``SENTIMENT_SHA256``).
    Otherwise, or when the download fails, raises :class:`advlib.datafiles.DataNotFoundError` naming the
    files to place under a data root.
    """
    names = list(SENTIMENT_FILES) if sources is None else list(sources)
    bad = [s for s in names if s not in SENTIMENT_FILES]
    if bad or not names:
        raise ValueError(f"sources must be a non-empty selection of {sorted(SENTIMENT_FILES)}, got {names!r}")
    roots = data_roots(root)
    expected = [f"text/sentiment/{SENTIMENT_FILES[s]}" for s in names]
    folder = next((r / "text" / "sentiment" for r in roots
                   if all((r / e).is_file() for e in expected)), None)
    if folder is None:
        hint = ("(It is the VADER ground truth; online it is downloaded from the source distribution of the "
                "PyPI package vaderSentiment 3.3.2 and checked; see book/data.md for where it comes from.)")
        url, sha256 = VADER_SDIST_URL, VADER_SDIST_SHA256  # read at call time, so that tests can point them elsewhere
        if not (download and _data.is_online(urllib.parse.urlsplit(url).hostname or "")):
            raise not_found("the sentiment corpus", expected, roots, hint)
        try:
            folder = download_sentiment_corpus(_data.default_cache_root(), url=url, sha256=sha256)
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise not_found("the sentiment corpus", expected, roots,
                           f"{hint}\n(The download from {url} failed: {reason})") from e
    out = []
    for s in names:
        out.extend(_read_rated(folder / SENTIMENT_FILES[s], s))
    return out


def download_sentiment_corpus(root: str | os.PathLike | None = None, url: str = VADER_SDIST_URL,
                              sha256: str | None = VADER_SDIST_SHA256, timeout: float = 60.0) -> Path:
    """Download the sentiment corpus into ``<root>/text/sentiment`` (``root`` defaults to the cache
    folder, :func:`advlib.datafiles.default_cache_root`) and return that folder.

    ``url`` is the source distribution of the PyPI package ``vaderSentiment`` 3.3.2; its SHA-256 must
    be ``sha256`` (``None`` skips only this check, for a copy served elsewhere). The four
    ``*_GroundTruth.txt`` files are read from its inner archive
    ``additional_resources/hutto_ICWSM_2014.tar.gz``, and its MIT licence is kept beside them as
    ``LICENSE-vaderSentiment.txt``. Nothing is extracted by name from the archive: only these
    members, each a regular file, are read as bytes. Every file must match its SHA-256 in
    ``SENTIMENT_SHA256``, or ``ValueError`` names the file and both checksums and nothing is
    written; then each file is written atomically (a temporary file renamed into place). A failed
    download raises ``OSError`` (``urllib.error.URLError``).
    """
    folder = Path(_data.default_cache_root() if root is None else root).expanduser() / "text" / "sentiment"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            blob = response.read(_MAX_SDIST_BYTES + 1)
    except http.client.HTTPException as e:  # e.g. IncompleteRead: the transfer broke off
        raise OSError(f"the download from {url} broke off ({type(e).__name__}: {e})") from e
    if len(blob) > _MAX_SDIST_BYTES:
        raise ValueError(f"{url} is over {_MAX_SDIST_BYTES >> 20} MiB: it is not the vaderSentiment 3.3.2 sdist")
    files = sentiment_files_from_sdist(blob, sha256=sha256, source=url)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        atomic_write(folder / name, lambda tmp, content=content: tmp.write_bytes(content))
    return folder


def sentiment_files_from_sdist(blob: bytes, sha256: str | None = VADER_SDIST_SHA256,
                               source: str = "the sdist") -> dict[str, bytes]:
    """The corpus files (``{file name: bytes}``, the keys of ``SENTIMENT_SHA256``) read from
    ``blob``, the bytes of the ``vaderSentiment`` 3.3.2 source distribution, each checked against its
    SHA-256; ``blob`` itself must hash to ``sha256`` unless that is ``None``. Raises ``ValueError``
    naming ``source``, the file and both checksums on any mismatch, and when a member is missing or
    not a regular file. Nothing is written.
    """
    if sha256 is not None and (got := hashlib.sha256(blob).hexdigest()) != sha256:
        raise ValueError(f"{source} does not match its checksum: SHA-256 {got}, expected {sha256} "
                         f"(the source distribution of vaderSentiment 3.3.2); nothing was written")
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as sdist:
            inner = _member_bytes(sdist, VADER_INNER_ARCHIVE, source)
            license_text = _member_bytes(sdist, _VADER_LICENSE, source)
        where = f"{VADER_INNER_ARCHIVE} in {source}"
        with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as archive:
            files = {name: license_text if member is None else _member_bytes(archive, member, where)
                     for name, member in VADER_MEMBERS.items()}
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise ValueError(f"{source} is not a readable .tar.gz ({type(e).__name__}: {e}); nothing was written") from e
    for name, content in files.items():
        got = hashlib.sha256(content).hexdigest()
        if got != SENTIMENT_SHA256[name]:
            raise ValueError(f"{name} from {source} does not match its checksum: SHA-256 {got}, expected "
                             f"{SENTIMENT_SHA256[name]}; the copy is corrupt or not the original, and nothing "
                             f"was written")
    return files


def _member_bytes(archive: tarfile.TarFile, name: str, where: str) -> bytes:
    """The bytes of the regular file ``name`` in ``archive``, or ``ValueError`` (missing, a link or a
    folder, or implausibly large)."""
    try:
        member = archive.getmember(name)
    except KeyError:
        raise ValueError(f"{where} holds no {name}; it is not the vaderSentiment 3.3.2 sdist, and nothing "
                         f"was written") from None
    if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
        raise ValueError(f"{name} in {where} is not a regular file of at most {_MAX_MEMBER_BYTES >> 20} MiB; "
                         f"nothing was written")
    handle = archive.extractfile(member)
    assert handle is not None  # a regular file always has one
    with handle:
        return handle.read()


def _read_rated(path: Path, source: str) -> list[Sentence]:
    """``ID<TAB>RATING<TAB>TEXT`` lines (CRLF, the text may hold tabs) as :class:`Sentence` objects.
    An empty file, or a rating off the scale (:data:`RATING_SCALE`), is an error naming the file and line."""
    rows = []
    with reading(path, "a tab-separated file of rated sentences"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise ValueError(f"line {i} has {len(parts)} tab-separated fields, not 3")
            rows.append(Sentence(tuple(tokenize(parts[2])), _rating(parts[1], i), source))
        if not rows:
            raise ValueError("it holds no rated sentences")
    return rows


def _rating(field: str, line: int) -> float:
    """The mean rating in ``field`` of line ``line``, or ``ValueError`` unless it is on the scale."""
    lo, hi = RATING_SCALE
    try:
        rating = float(field)
    except ValueError:
        rating = math.nan
    if not lo <= rating <= hi:  # NaN included
        raise ValueError(f"line {line}: the rating must be a finite number in [{lo:g}, {hi:g}], got {field!r}")
    return rating


@dataclass
class Vocab:
    """Token <-> id maps. Ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; the others are
    tokens by falling frequency. Build one with :meth:`build`.
    """

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)
    pad: ClassVar[int] = 0  # the ids of the four special tokens, in SPECIALS' order
    bos: ClassVar[int] = 1
    eos: ClassVar[int] = 2
    unk: ClassVar[int] = 3

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != SPECIALS:
            raise ValueError(f"itos must start with {SPECIALS}, got {self.itos[:4]}")
        repeated = sorted(t for t, c in Counter(self.itos).items() if c > 1)
        if repeated:
            raise ValueError(f"itos must hold each token once (one id each), got {repeated} more than once")
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: int = 5000, min_count: int = 1) -> "Vocab":
        """The ``max_size`` most frequent tokens (specials included) seen at least ``min_count`` times
        (ties broken alphabetically, so the vocabulary does not depend on the order of the sentences).

        Taught in :ref:`ch-arae`."""
        check_int(max_size, "max_size", minimum=len(SPECIALS) + 1)
        counts = Counter(t for s in sentences for t in s)
        ranked = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                        key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + ranked[: max_size - len(SPECIALS)])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens`` (``<unk>`` for tokens outside the vocabulary), without ``<eos>``.

        Taught in :ref:`ch-arae`."""
        return [self.stoi.get(t, self.unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` up to the first ``<eos>``, skipping ``<pad>`` and ``<bos>``. Every id must
        be an integer in ``[0, len(vocab))`` (``ValueError`` otherwise).

        Taught in :ref:`ch-arae`."""
        out = []
        for i in self._check_ids(ids, "ids"):
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.itos[i])
        return out

    def _check_ids(self, ids: Iterable[int], name: str) -> list[int]:
        """``ids`` as a list of ints, or ``ValueError`` naming ``name`` unless each is an integer id of
        the vocabulary, in ``[0, len(vocab))`` (ints, NumPy ints and one-element integer tensors)."""
        ids = list(ids)
        values = [_as_index(i) for i in ids]
        bad = [i for i, v in zip(ids, values) if not 0 <= v < len(self)]
        if bad:
            raise ValueError(f"{name} must hold integer token ids in [0, {len(self)}) (the vocabulary's ids), "
                             f"got {bad[:5]!r}")
        return values

    def unknown_rate(self, sentences: Iterable[Sequence[str]]) -> float:
        """The share of tokens of ``sentences`` outside the vocabulary.

        Taught in :ref:`ch-arae`."""
        total = unknown = 0
        for s in sentences:
            total += len(s)
            unknown += sum(t not in self.stoi for t in s)
        return unknown / max(total, 1)


def _as_index(i: object) -> int:
    """``i`` as an int if it is an integer (Python, NumPy or a one-element integer tensor), else -1
    (never a token id)."""
    try:
        return operator.index(i)
    except TypeError:
        return -1


def pad_batch(sequences: Sequence[Sequence[int]], vocab: Vocab, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors for id sequences of any lengths: ``(inputs, targets, lengths)``.

    ``inputs[i] = <bos> w_1 .. w_T <pad>...`` and ``targets[i] = w_1 .. w_T <eos> <pad>...``, both
    ``(N, max T + 1)`` int64; ``lengths[i] = T + 1`` (the positions scored). Every id must be an
    integer in ``[0, len(vocab))`` (``ValueError`` naming the sequence otherwise).
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got none")
    sequences = [vocab._check_ids(s, f"sequences[{k}]") for k, s in enumerate(sequences)]
    width = max(len(s) for s in sequences) + 1
    inputs = torch.full((len(sequences), width), vocab.pad, dtype=torch.long)
    targets = torch.full((len(sequences), width), vocab.pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        s = torch.as_tensor(list(s), dtype=torch.long)
        inputs[i, 0] = vocab.bos
        inputs[i, 1: len(s) + 1] = s
        targets[i, : len(s)] = s
        targets[i, len(s)] = vocab.eos
    lengths = torch.tensor([len(s) + 1 for s in sequences], dtype=torch.long)
    return inputs.to(device), targets.to(device), lengths.to(device)


@dataclass
class SentimentCorpus:
    """Token-id sequences with binary sentiment labels, split into train and test, and the vocabulary
    built on the training part. Make one with :func:`sentiment_corpus`.
    """

    vocab: Vocab
    train: list[tuple[list[int], int]]
    test: list[tuple[list[int], int]]
    train_sentences: list[Sentence]
    test_sentences: list[Sentence]

    def __repr__(self) -> str:
        pos = sum(y for _, y in self.train) / max(len(self.train), 1)
        return (f"SentimentCorpus(train={len(self.train)}, test={len(self.test)}, vocab={len(self.vocab)}, "
                f"positive share {pos:.2f})")

    def batches(self, batch_size: int, *, split: str = "train", shuffle: bool = True, seed: int = 0,
                device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor, torch.Tensor]]:
        """Endless ``(inputs, targets, lengths, labels)`` batches of ``split`` (``"train"`` or
        ``"test"``), reshuffled each pass by a generator seeded with ``seed``; the last partial batch
        of a pass is dropped (every batch has ``batch_size`` sentences).

        Taught in :ref:`ch-arae`."""
        rows = self._split(split)
        if batch_size < 1 or batch_size > len(rows):
            raise ValueError(f"batch_size must be in 1..{len(rows)} (the {split} split), got {batch_size}")
        rng = random.Random(seed)
        order = list(range(len(rows)))
        while True:
            if shuffle:
                rng.shuffle(order)
            for start in range(0, len(order) - batch_size + 1, batch_size):
                chunk = [rows[i] for i in order[start: start + batch_size]]
                inputs, targets, lengths = pad_batch([s for s, _ in chunk], self.vocab, device)
                labels = torch.tensor([y for _, y in chunk], dtype=torch.long, device=device)
                yield inputs, targets, lengths, labels

    def _split(self, split: str) -> list[tuple[list[int], int]]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train if split == "train" else self.test


def sentiment_corpus(max_len: int = 20, min_abs_rating: float = 0.5, vocab_size: int = 8000,
                     min_count: int = 2, n_test: int = 1000, seed: int = 0, root: str | None = None,
                     sources: Iterable[str] | None = None) -> SentimentCorpus:
    """The sentences of at most ``max_len`` tokens whose mean rating is at least ``min_abs_rating``
    away from neutral, labelled positive (rating > 0) or negative; ``n_test`` of them (seeded) held
    out; a vocabulary of at most ``vocab_size`` tokens seen ``min_count`` times in the rest.
    """
    check_int(max_len, "max_len", minimum=1)
    check_nonnegative(min_abs_rating, "min_abs_rating")
    kept = [s for s in sentiment_sentences(root, sources)
            if 1 <= len(s.tokens) <= max_len and abs(s.rating) >= min_abs_rating]
    if not 0 < n_test < len(kept):
        raise ValueError(f"n_test must be in 1..{len(kept) - 1} ({len(kept)} sentences are kept), got {n_test}")
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    test_s = [kept[i] for i in order[:n_test]]
    train_s = [kept[i] for i in order[n_test:]]
    vocab = Vocab.build((s.tokens for s in train_s), max_size=vocab_size, min_count=min_count)
    encode = lambda ss: [(vocab.encode(s.tokens), s.label) for s in ss]  # noqa: E731
    return SentimentCorpus(vocab, encode(train_s), encode(test_s), train_s, test_s)


__all__ = ["Sentence", "SentimentCorpus", "Vocab", "download_sentiment_corpus", "pad_batch", "sentiment_corpus",
           "sentiment_files_from_sdist", "sentiment_sentences", "tokenize"]
