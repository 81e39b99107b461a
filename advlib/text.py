"""Sentences as token sequences: the offline sentiment corpus, a tokeniser, a vocabulary and padded
batches. Chapter 03 (:ref:`ch-arae`) trains its adversarially regularised autoencoders on them.

The corpus is the ground truth of the VADER study (Hutto & Gilbert 2014): 23,703 English sentences
(movie and product review snippets, editorial sentences, tweets), each with the mean sentiment
rating of 20 or more human raters on a scale from -4 to +4. It is read through the data root like
the image data (``root`` argument, then ``$ADVLIB_DATA``, then the cache folder), from
``<root>/text/sentiment/*_GroundTruth.txt``; offline and missing, the error names the files.

A sentence becomes the token ids ``w_1 .. w_T`` followed by ``<eos>``; the decoder reads ``<bos>``
then ``w_1 .. w_T`` and predicts ``w_1 .. w_T, <eos>`` (teacher forcing).
"""
from __future__ import annotations

import html
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Iterator, Sequence

import torch

from .data import _missing, _reading, data_roots

SENTIMENT_FILES = {
    # source name -> file under <root>/text/sentiment
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't|[.,!?;:()\-\"']")


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words, numbers and punctuation marks: ``"It's GREAT!"`` -> ``["it's", "great", "!"]``.

    HTML entities are unescaped first (``&amp;`` -> ``&``); characters outside the pattern (``&``, ``#``,
    ``@``, emoji) are dropped.

    Taught in :ref:`ch-arae`.
    """
    text = html.unescape(sentence).lower().replace("''", '"').replace("`", "'")
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Sentence:
    """One rated sentence: its ``tokens``, the mean human ``rating`` (-4 .. +4) and its ``source``
    (``movie``, ``amazon``, ``nyt`` or ``tweets``). ``label`` is 1 for positive, 0 for negative.

    Taught in :ref:`ch-arae`."""

    tokens: tuple[str, ...]
    rating: float
    source: str

    @property
    def label(self) -> int:
        return int(self.rating > 0)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def sentiment_sentences(root: str | None = None, sources: Iterable[str] | None = None) -> list[Sentence]:
    """All sentences of the sentiment corpus (or of the ``sources`` named), tokenised, in file order.

    Raises :class:`advlib.data.DataNotFoundError` naming the files to place under a data root when
    they are missing (the corpus is not downloaded: it ships with the book's offline data).

    Taught in :ref:`ch-arae`.
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
        raise _missing("the sentiment corpus", expected, roots,
                       "(It is the VADER ground truth; see book/data.md for where it comes from.)")
    out = []
    for s in names:
        out.extend(_read_rated(folder / SENTIMENT_FILES[s], s))
    return out


def _read_rated(path: Path, source: str) -> list[Sentence]:
    """``ID<TAB>RATING<TAB>TEXT`` lines (CRLF, the text may hold tabs) as :class:`Sentence` objects."""
    rows = []
    with _reading(path, "a tab-separated file of rated sentences"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise ValueError(f"line {i} has {len(parts)} tab-separated fields, not 3")
            rows.append(Sentence(tuple(tokenize(parts[2])), float(parts[1]), source))
    return rows


@dataclass
class Vocab:
    """Token <-> id maps. Ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; the others are
    tokens by falling frequency. Build one with :meth:`build`.

    Taught in :ref:`ch-arae`."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)
    pad: ClassVar[int] = 0  # the ids of the four special tokens, in SPECIALS' order
    bos: ClassVar[int] = 1
    eos: ClassVar[int] = 2
    unk: ClassVar[int] = 3

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != SPECIALS:
            raise ValueError(f"itos must start with {SPECIALS}, got {self.itos[:4]}")
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: int = 5000, min_count: int = 1) -> "Vocab":
        """The ``max_size`` most frequent tokens (specials included) seen at least ``min_count`` times
        (ties broken alphabetically, so the vocabulary does not depend on the order of the sentences).

        Taught in :ref:`ch-arae`."""
        if max_size <= len(SPECIALS):
            raise ValueError(f"max_size must be more than {len(SPECIALS)}, got {max_size}")
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
        """Tokens of ``ids`` up to the first ``<eos>``, skipping ``<pad>`` and ``<bos>``.

        Taught in :ref:`ch-arae`."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.itos[i])
        return out

    def unknown_rate(self, sentences: Iterable[Sequence[str]]) -> float:
        """The share of tokens of ``sentences`` outside the vocabulary.

        Taught in :ref:`ch-arae`."""
        total = unknown = 0
        for s in sentences:
            total += len(s)
            unknown += sum(t not in self.stoi for t in s)
        return unknown / max(total, 1)


def pad_batch(sequences: Sequence[Sequence[int]], vocab: Vocab, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors for id sequences of any lengths: ``(inputs, targets, lengths)``.

    ``inputs[i] = <bos> w_1 .. w_T <pad>...`` and ``targets[i] = w_1 .. w_T <eos> <pad>...``, both
    ``(N, max T + 1)`` int64; ``lengths[i] = T + 1`` (the positions scored).

    Taught in :ref:`ch-arae`.
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got none")
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

    Taught in :ref:`ch-arae`."""

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

    Taught in :ref:`ch-arae`."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    if min_abs_rating < 0:
        raise ValueError(f"min_abs_rating must be >= 0, got {min_abs_rating}")
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


__all__ = ["Sentence", "SentimentCorpus", "Vocab", "pad_batch", "sentiment_corpus", "sentiment_sentences",
           "tokenize"]
