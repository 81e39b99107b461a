"""Chapter 03's text pipeline (advlib.text) and adversarially regularised autoencoder (advlib.arae)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from advlib import arae, data, text, zoo
from advlib.data import DataNotFoundError


# ------------------------------------------------------------------------------------------ text
def test_tokenize_lowercases_splits_punctuation_and_unescapes_html():
    assert text.tokenize("It's GREAT!") == ["it's", "great", "!"]
    assert text.tokenize("Tom &amp; Jerry, 2 cats.") == ["tom", "jerry", ",", "2", "cats", "."]
    assert text.tokenize("a ''quoted'' word") == ["a", '"', "quoted", '"', "word"]


def test_vocab_is_ordered_by_frequency_and_independent_of_sentence_order():
    sents = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    v = text.Vocab.build(sents, max_size=7)
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"]  # c and d tie: alphabetical
    assert text.Vocab.build(sents[::-1], max_size=7).itos == v.itos
    assert v.encode(["a", "zzz"]) == [4, v.unk]
    assert v.decode([4, 5, v.eos, 6]) == ["a", "b"]  # stops at <eos>
    assert v.decode([v.bos, 4, v.pad]) == ["a"]
    assert text.Vocab.build(sents, min_count=2).itos[4:] == ["a", "b"]
    assert v.unknown_rate([["a", "d"], ["zzz", "b"]]) == 0.5
    with pytest.raises(ValueError, match="max_size"):
        text.Vocab.build(sents, max_size=4)
    with pytest.raises(ValueError, match="itos"):
        text.Vocab(["a", "b", "c", "d"])


def test_pad_batch_gives_teacher_forcing_pairs():
    v = text.Vocab.build([["x", "y", "z"]])
    inputs, targets, lengths = text.pad_batch([[4, 5, 6], [5]], v)
    assert inputs.tolist() == [[v.bos, 4, 5, 6], [v.bos, 5, v.pad, v.pad]]
    assert targets.tolist() == [[4, 5, 6, v.eos], [5, v.eos, v.pad, v.pad]]
    assert lengths.tolist() == [4, 2] and inputs.dtype == targets.dtype == torch.long
    with pytest.raises(ValueError, match="sequences"):
        text.pad_batch([], v)


def test_the_offline_corpus_has_all_its_sentences():
    sents = text.sentiment_sentences()
    assert len(sents) == 23703
    by_source = {s: sum(x.source == s for x in sents) for s in text.SENTIMENT_FILES}
    assert by_source == {"movie": 10605, "amazon": 3708, "nyt": 5190, "tweets": 4200}
    assert sum(x.rating > 0 for x in sents) == 12471 and sum(x.rating < 0 for x in sents) == 10849
    with pytest.raises(ValueError, match="sources"):
        text.sentiment_sentences(sources=["reddit"])


def test_a_missing_corpus_names_the_files_to_place(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "is_online", lambda *a, **k: False)  # offline: no download to fall back on
    with pytest.raises(DataNotFoundError, match="text/sentiment/tweets_GroundTruth.txt"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])


def test_a_corrupt_corpus_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    folder = tmp_path / "text" / "sentiment"
    folder.mkdir(parents=True)
    (folder / text.SENTIMENT_FILES["tweets"]).write_text("1\tnot a number\thello\r\n")
    with pytest.raises(ValueError, match="tweets_GroundTruth.txt"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])


def test_corpus_split_is_seeded_disjoint_and_labelled_by_the_rating_sign():
    a = text.sentiment_corpus(max_len=10, n_test=200, seed=3)
    b = text.sentiment_corpus(max_len=10, n_test=200, seed=3)
    assert [s.text for s in a.test_sentences] == [s.text for s in b.test_sentences]
    kept = [s for s in text.sentiment_sentences() if 1 <= len(s.tokens) <= 10 and abs(s.rating) >= 0.5]
    assert len(a.test) == 200 and len(a.train) + len(a.test) == len(kept)
    assert sorted(map(repr, a.train_sentences + a.test_sentences)) == sorted(map(repr, kept))  # a partition
    other = text.sentiment_corpus(max_len=10, n_test=200, seed=4)
    assert [s.text for s in other.test_sentences] != [s.text for s in a.test_sentences]
    assert all(len(s.tokens) <= 10 and abs(s.rating) >= 0.5 for s in a.train_sentences)
    assert [y for _, y in a.train] == [int(s.rating > 0) for s in a.train_sentences]
    assert all(1 <= i < len(a.vocab) for ids, _ in a.train for i in ids)
    inputs, targets, lengths, labels = next(a.batches(16, seed=0))
    assert inputs.shape == targets.shape and len(labels) == 16 and set(labels.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="split"):
        next(a.batches(16, split="valid"))
    with pytest.raises(ValueError, match="batch_size"):
        next(a.batches(0))
    with pytest.raises(ValueError, match="n_test"):
        text.sentiment_corpus(max_len=3, n_test=10**6)


def test_batches_drop_the_partial_last_batch_and_cover_each_pass():
    c = text.sentiment_corpus(max_len=6, n_test=50)
    n = len(c.train)
    stream = c.batches(n // 2 + 1, seed=1)
    first, second = next(stream), next(stream)  # one batch a pass: the other half is dropped
    assert len(first[3]) == len(second[3]) == n // 2 + 1


# ------------------------------------------------------------------------------------------ model
@pytest.fixture
def tiny_corpus():
    """Eight short sentences, four of each label, as a SentimentCorpus."""
    pos = ["a good film", "a great good film", "good and great", "great fun"]
    neg = ["a bad film", "a dull bad film", "bad and dull", "dull stuff"]
    sents = [text.Sentence(tuple(s.split()), 1.0, "movie") for s in pos] + \
            [text.Sentence(tuple(s.split()), -1.0, "movie") for s in neg]
    vocab = text.Vocab.build(s.tokens for s in sents)
    rows = [(vocab.encode(s.tokens), s.label) for s in sents]
    return text.SentimentCorpus(vocab, rows, rows, sents, sents)


def small_model(corpus, seed=0):
    torch.manual_seed(seed)
    return arae.ARAE(len(corpus.vocab), embed=16, hidden=32, code=8, noise=4, mlp=16)


def test_codes_lie_on_the_unit_sphere_until_noise_is_added(tiny_corpus):
    m = small_model(tiny_corpus)
    _, targets, lengths, _ = next(tiny_corpus.batches(8, shuffle=False))
    code = m.encode(targets, lengths)
    assert code.shape == (8, 8) and torch.allclose(code.norm(dim=1), torch.ones(8), atol=1e-5)
    noisy = m.encode(targets, lengths, noise_std=0.5, generator=torch.Generator().manual_seed(0))
    assert (noisy - code).norm(dim=1).mean() > 0.5  # E||noise|| = 0.5 * sqrt(8) * ~0.97
    with pytest.raises(ValueError, match="attribute"):
        m.decode_logits(code, targets, 2)
    with pytest.raises(ValueError, match="hidden"):
        arae.ARAE(10, hidden=0)


def test_gradient_penalty_is_zero_for_unit_slope_and_one_for_slope_two():
    for slope, expected in [(1.0, 0.0), (2.0, 1.0)]:
        critic = torch.nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            critic.weight.copy_(torch.tensor([[slope, 0.0, 0.0]]))
        gp = arae.gradient_penalty(critic, torch.randn(5, 3), torch.randn(5, 3))
        assert gp.item() == pytest.approx(expected, abs=1e-6)


def batches_of(corpus, settings, seed=0):
    stream = corpus.batches(8, seed=seed)
    return [next(stream) for _ in range(1 + settings.critic_steps)]


def test_a_round_is_reproducible_and_leaves_the_global_rng_alone(tiny_corpus):
    settings = arae.ARAESettings(critic_steps=2)
    results = []
    for _ in range(2):
        m = small_model(tiny_corpus)
        opt = arae.make_optimizers(m)
        state = torch.get_rng_state()
        log = arae.arae_round(m, opt, batches_of(tiny_corpus, settings), settings, 0.1,
                              torch.Generator().manual_seed(5))
        assert torch.equal(torch.get_rng_state(), state)
        results.append((log, m.state_dict()))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])
    assert set(results[0][0]) == {"reconstruction", "classifier", "w_distance", "generator"}


def test_the_adversaries_push_the_encoder_only_when_their_weights_are_positive(tiny_corpus):
    """With both weights 0 the encoder moves exactly as one reconstruction step moves it; with either
    weight positive it moves differently."""
    def encoder_after(settings):
        m = small_model(tiny_corpus)
        arae.arae_round(m, arae.make_optimizers(m), batches_of(tiny_corpus, settings), settings, 0.1,
                        torch.Generator().manual_seed(5))
        return m.to_code.weight.detach().clone()

    base = arae.ARAESettings(lambda_critic=0.0, lambda_class=0.0, critic_steps=1)
    m = small_model(tiny_corpus)
    opt = arae.make_optimizers(m)
    inputs, targets, lengths, labels = batches_of(tiny_corpus, base)[0]
    code = m.encode(targets, lengths, 0.1, torch.Generator().manual_seed(5))
    arae._step(opt.autoencoder, m.reconstruction_loss(code, inputs, targets, labels), base.clip)
    only_reconstruction = m.to_code.weight.detach()
    assert torch.equal(encoder_after(base), only_reconstruction)
    for pushed in (dict(lambda_critic=1.0, lambda_class=0.0), dict(lambda_critic=0.0, lambda_class=1.0)):
        moved = encoder_after(arae.ARAESettings(critic_steps=1, **pushed))
        assert (moved - only_reconstruction).abs().max() > 1e-6, pushed


def test_critic_steps_estimate_the_wasserstein_distance_of_shifted_codes(tiny_corpus):
    m = small_model(tiny_corpus)
    opt = arae.make_optimizers(m, lr_gan=1e-2)
    _, targets, lengths, _ = next(tiny_corpus.batches(8))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        real = m.encode(targets, lengths)
    fake = real + 3.0  # far from the codes: W is about 3 * sqrt(8)
    estimates = []
    for _ in range(200):
        w = m.critic(real).mean() - m.critic(fake).mean()
        loss = -w + 10.0 * arae.gradient_penalty(m.critic, real, fake, g)
        arae._step(opt.critic, loss)
        estimates.append(w.item())
    # W = 3 sqrt(8) = 8.49 (a shift). Under a penalty of weight 10 the best critic along the shift has
    # slope about 1.4 (maximise 8.49 s - 10 (s - 1)^2), so the estimate ends between W and about 1.5 W.
    w_true = 3.0 * math.sqrt(8)
    assert abs(estimates[0]) < 1.0 and 0.9 * w_true < estimates[-1] < 1.6 * w_true


def test_training_overfits_eight_sentences_and_transfer_swaps_the_decoder(tiny_corpus):
    m = small_model(tiny_corpus)
    settings = arae.ARAESettings(critic_steps=1, lambda_class=0.0)
    hist = arae.train_arae(m, tiny_corpus, steps=300, batch_size=8, settings=settings, lr_autoencoder=1e-2,
                           log_every=100, progress=False)
    assert not m.training
    assert list(hist["step"]) == [100, 200, 300] and hist["time"].is_monotonic_increasing
    assert hist["test_token_accuracy"].iloc[-1] > 0.95
    ids = [s for s, _ in tiny_corpus.train]
    labels = [y for _, y in tiny_corpus.train]
    recon = arae.transfer(m, tiny_corpus.vocab, ids, labels)
    assert sum(r == list(s.tokens) for r, s in zip(recon, tiny_corpus.train_sentences)) >= 7
    flipped = arae.transfer(m, tiny_corpus.vocab, ids, [1 - y for y in labels])
    assert flipped != recon and len(flipped) == 8
    with pytest.raises(ValueError, match="target"):
        arae.transfer(m, tiny_corpus.vocab, ids, [0, 1])
    with pytest.raises(ValueError, match="steps"):
        arae.train_arae(m, tiny_corpus, steps=0)


def test_a_non_finite_loss_stops_training(tiny_corpus):
    m = small_model(tiny_corpus)
    with torch.no_grad():
        m.outputs[1].weight.fill_(float("nan"))
    settings = arae.ARAESettings(critic_steps=1)
    with pytest.raises(FloatingPointError, match="not finite"):
        arae.arae_round(m, arae.make_optimizers(m), batches_of(tiny_corpus, settings), settings, 0.1)


def test_language_model_perplexity_falls_from_the_vocabulary_size_on_what_it_learned(tiny_corpus):
    torch.manual_seed(0)
    lm = arae.LanguageModel(len(tiny_corpus.vocab), embed=16, hidden=32)
    ids = [s for s, _ in tiny_corpus.train]
    before = arae.perplexity(lm, ids, tiny_corpus.vocab)
    assert 0.5 * len(tiny_corpus.vocab) < before < 2 * len(tiny_corpus.vocab)  # near uniform at init
    arae.train_language_model(lm, ids, tiny_corpus.vocab, steps=200, batch_size=8, lr=1e-2)
    after = arae.perplexity(lm, ids, tiny_corpus.vocab)
    # the sentences are not predictable word for word (two start with "a", ...): about 1.5-2.5
    assert after < 3.0 < before
    inputs, targets, _ = text.pad_batch(ids, tiny_corpus.vocab)
    nll = F.cross_entropy(lm(inputs).flatten(0, 1), targets.flatten(), ignore_index=0)
    assert after == pytest.approx(math.exp(nll.item()), rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        arae.perplexity(lm, [[]], tiny_corpus.vocab)


def test_the_zoo_recipe_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADVLIB_PROGRESS", "0")
    monkeypatch.setitem(zoo.RECIPES["arae_sentiment"]["smoke"], "steps", 4)
    m = zoo.arae_sentiment("arae", budget="smoke", verbose=False)
    assert m.meta["config"]["variant"] == "arae" and m.meta["config"]["lambda_critic"] == 0.01
    assert len(m.vocab) == m.vocab_size and len(m.meta["history"]["time"]) == 4
    again = zoo.arae_sentiment("arae", budget="smoke", verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
    other = zoo.arae_sentiment("ae", budget="smoke", verbose=False)
    assert len(list(tmp_path.iterdir())) == 2 and other.meta["config"]["lambda_class"] == 0.0
    with pytest.raises(ValueError, match="method"):
        zoo.arae_sentiment("vae", budget="smoke")
