"""Chapter 03's recipes, adversarially regularised autoencoders on sentences (taught in chapter 03),
with their settings: ``sentiment_corpus`` (the corpus they are trained on), ``arae_sentiment`` (one
model per variant of ``ARAE_VARIANTS``) and ``sentiment_language_model`` (to score fluency).
"""
from __future__ import annotations

import time

import torch

from .. import arae, cache, text
from ..utils import check_int
from ._common import RECIPES, cache_name, _one_process_only, recipe

RECIPES.update({
    # Chapter 03: adversarially regularised autoencoders on the sentiment corpus (sentences of at most
    # max_len tokens rated at least 0.5 from neutral), one LSTM decoder per sentiment. book: the
    # reference code's sizes (embedding and LSTM 128, noise 32, MLPs 128) on a vocabulary of the
    # tokens seen twice; Adam for the autoencoder instead of SGD at lr 1 (see arae.make_optimizers).
    # ``method`` (an argument of the recipe) sets the two weights.
    "arae_sentiment": {
        "smoke": dict(max_len=12, vocab_size=2000, min_count=3, n_test=300, embed=32, hidden=64, code=32,
                      noise=16, mlp=64, steps=250, batch_size=32, critic_steps=2, noise_std=0.1, lr=1e-2,
                      seed=0),
        "book": dict(max_len=15, vocab_size=8000, min_count=2, n_test=1000, embed=128, hidden=128, code=128,
                     noise=32, mlp=128, steps=3000, batch_size=64, critic_steps=5, noise_std=0.1, lr=3e-3,
                     seed=0),
        "paper": dict(max_len=25, vocab_size=30000, min_count=1, n_test=1000, embed=128, hidden=128, code=128,
                      noise=32, mlp=128, steps=100000, batch_size=64, critic_steps=5, noise_std=0.1, lr=1e-3,
                      seed=0),
    },
    # Chapter 03: an LSTM language model of the same training sentences (the corpus settings are
    # arae_sentiment's, and part of this recipe's cache key too), to score fluency by perplexity.
    "sentiment_language_model": {
        "smoke": dict(embed=32, hidden=64, steps=60, batch_size=32, lr=3e-3, seed=0),
        "book": dict(embed=128, hidden=256, steps=2000, batch_size=64, lr=2e-3, seed=0),
        "paper": dict(embed=128, hidden=256, steps=20000, batch_size=64, lr=2e-3, seed=0),
    },
})


CORPUS_SETTINGS = ("max_len", "vocab_size", "min_count", "n_test", "seed")

ARAE_VARIANTS: dict[str, dict[str, float]] = {
    # method -> the weights of arae.ARAESettings: the critic's gradient into the encoder (lambda_1)
    # and the encoder's loss against the code classifier (lambda_2)
    "ae": dict(lambda_critic=0.0, lambda_class=0.0),          # plain autoencoder, two decoders
    "ae_classifier": dict(lambda_critic=0.0, lambda_class=1.0),  # no critic into the encoder
    "arae": dict(lambda_critic=0.01, lambda_class=1.0),       # the reference code's defaults
    "arae_x10": dict(lambda_critic=0.1, lambda_class=1.0),    # ten times the critic's weight
}


def sentiment_corpus(*, budget: str | None = None, root=None) -> text.SentimentCorpus:
    """The sentiment corpus with the settings of the ``arae_sentiment`` recipe at ``budget``
    (the same sentences, split and vocabulary the chapter-03 models were trained on).
    """
    cfg = recipe("arae_sentiment", budget)  # CORPUS_SETTINGS of it
    return text.sentiment_corpus(max_len=cfg["max_len"], vocab_size=cfg["vocab_size"], min_count=cfg["min_count"],
                                 n_test=cfg["n_test"], seed=cfg["seed"], root=root)


def arae_sentiment(method: str = "arae", *, budget: str | None = None, seed: int | None = None,
                   retrain: bool = False, root=None, verbose: bool = True) -> arae.ARAE:
    """An ARAE with one decoder per sentiment, trained on :func:`sentiment_corpus`.

    ``method`` is one of ``ARAE_VARIANTS``: ``"ae"`` (no adversary pushes on the codes),
    ``"ae_classifier"`` (only the code classifier does), ``"arae"`` (critic and classifier, the
    reference code's weights) and ``"arae_x10"`` (ten times the critic's weight). The critic and the
    generator are trained in every variant, so every model has a learned prior to sample from.
    ``model.meta["history"]`` holds the losses, the held-out token accuracy and the wall time.
    """
    if method not in ARAE_VARIANTS:
        raise ValueError(f"method must be one of {sorted(ARAE_VARIANTS)}, got {method!r}")
    cfg = recipe("arae_sentiment", budget, seed)  # the seed of the training; the corpus keeps its split
    cfg.update(variant=method, **ARAE_VARIANTS[method])  # the settings' key keeps its name: cache keys stay
    corpus = sentiment_corpus(budget=cfg["budget"], root=root)

    def build() -> arae.ARAE:
        torch.manual_seed(cfg["seed"])
        return arae.ARAE(len(corpus.vocab), n_attributes=2, embed=cfg["embed"], hidden=cfg["hidden"],
                         code=cfg["code"], noise=cfg["noise"], mlp=cfg["mlp"])

    def train(model: arae.ARAE):
        _one_process_only("arae_sentiment", "advlib.arae.train_arae")
        settings = arae.ARAESettings(lambda_critic=cfg["lambda_critic"], lambda_class=cfg["lambda_class"],
                                     critic_steps=cfg["critic_steps"])
        return arae.train_arae(model, corpus, steps=cfg["steps"], batch_size=cfg["batch_size"], settings=settings,
                               noise_std=cfg["noise_std"], lr_autoencoder=cfg["lr"],
                               log_every=max(cfg["steps"] // 15, 1), seed=cfg["seed"])

    model = cache.load_or_train(cache_name("arae_sentiment", method), build, train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.vocab = corpus.vocab
    return model


def sentiment_language_model(*, budget: str | None = None, seed: int | None = None, retrain: bool = False,
                             root=None, verbose: bool = True) -> arae.LanguageModel:
    """An LSTM language model of the training sentences of :func:`sentiment_corpus`, to score the
    fluency of generated and transferred sentences by perplexity.
    """
    cfg = recipe("sentiment_language_model", budget)
    corpus_cfg = recipe("arae_sentiment", cfg["budget"])
    cfg.update({k: corpus_cfg[k] for k in CORPUS_SETTINGS})
    if seed is not None:  # the seed of the training; the corpus keeps its split (and its "seed")
        cfg["train_seed"] = check_int(seed, "seed")
    train_seed = cfg.get("train_seed", cfg["seed"])
    corpus = sentiment_corpus(budget=cfg["budget"], root=root)

    def build() -> arae.LanguageModel:
        torch.manual_seed(train_seed)
        return arae.LanguageModel(len(corpus.vocab), embed=cfg["embed"], hidden=cfg["hidden"])

    def train(model: arae.LanguageModel):
        _one_process_only("sentiment_language_model", "advlib.arae.train_language_model")
        start = time.perf_counter()
        arae.train_language_model(model, [s for s, _ in corpus.train], corpus.vocab, steps=cfg["steps"],
                                  batch_size=cfg["batch_size"], lr=cfg["lr"], seed=train_seed)
        return {"time": [time.perf_counter() - start],
                "test_perplexity": [arae.perplexity(model, [s for s, _ in corpus.test], corpus.vocab)]}

    return cache.load_or_train("sentiment_language_model", build, train, cfg, cfg["budget"], retrain,
                               verbose=verbose)
