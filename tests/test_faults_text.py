"""Faults of the text pipeline (advlib.text) and the ARAE (advlib.arae): bad corpus files, bad token ids
and bad arguments, each named by the error (the IDs are those of the reliability probe, T.. and R..)."""
import copy
import re

import numpy as np
import pytest
import torch

from advlib import arae, text


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Only the folder under test is searched."""
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def write_tweets(root, lines) -> str:
    """``lines`` as the tweets file of the corpus under ``root`` (CRLF line ends, like the real files)."""
    folder = root / "text" / "sentiment"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / text.SENTIMENT_FILES["tweets"]
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())
    return path.name


GOOD = ["1\t2.5\ta good film", "2\t-1.5\ta dull film", "3\t3.0\tgreat fun"]


# ------------------------------------------------------------------------------------- corpus files
def test_an_empty_corpus_file_is_named_when_read(tmp_path, offline):
    """reliability T03: a 0-byte file (a truncated copy) is an error naming it, not 0 sentences."""
    folder = tmp_path / "text" / "sentiment"
    folder.mkdir(parents=True)
    (folder / text.SENTIMENT_FILES["tweets"]).write_bytes(b"")
    for read in (lambda: text.sentiment_sentences(root=tmp_path, sources=["tweets"]),
                 lambda: text.sentiment_corpus(n_test=1, min_count=1, root=tmp_path, sources=["tweets"])):
        with pytest.raises(ValueError, match=r"tweets_GroundTruth\.txt.*no rated sentences") as err:
            read()
        assert "n_test" not in str(err.value)


def test_a_rating_that_is_not_a_number_names_the_file_and_line(tmp_path, offline):
    """reliability T04."""
    name = write_tweets(tmp_path, GOOD + ["4\tabc\tfour"])
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*line 4.*'abc'"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])


@pytest.mark.parametrize("rating", ["nan", "inf", "-inf", "99", "-4.01"])
def test_a_rating_off_the_scale_names_the_file_and_line(tmp_path, offline, rating):
    """reliability T05: the mean ratings lie on the scale -4..+4; NaN, infinities and 99 are not kept
    (they were labelled, 'inf' and '99' as positive sentences)."""
    name = write_tweets(tmp_path, GOOD[:1] + [f"2\t{rating}\tbad rating"] + GOOD[1:])
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*line 2.*finite number in \[-4, 4\]"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])


def test_ratings_at_the_ends_of_the_scale_are_kept(tmp_path, offline):
    """reliability T05: the check does not drop the ends of the scale."""
    write_tweets(tmp_path, ["1\t-4\tthe worst", "2\t4.0\tthe best"])
    assert [s.rating for s in text.sentiment_sentences(root=tmp_path, sources=["tweets"])] == [-4.0, 4.0]


def test_min_abs_rating_must_be_a_finite_number(tmp_path, offline):
    """reliability T24: NaN kept no sentence and the error spoke of n_test."""
    write_tweets(tmp_path, GOOD)
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ValueError, match="min_abs_rating"):
            text.sentiment_corpus(min_abs_rating=bad, n_test=1, min_count=1, root=tmp_path, sources=["tweets"])


# ------------------------------------------------------------------------------- vocabulary and ids
@pytest.fixture
def vocab():
    """Six ids: the four specials, 'good' (4) and 'movie' (5)."""
    return text.Vocab(list(text.SPECIALS) + ["good", "movie"])


def test_max_size_must_be_an_integer():
    """reliability T15: 6.5 gave a TypeError about slice indices."""
    with pytest.raises(ValueError, match="max_size"):
        text.Vocab.build([["a", "b"]], max_size=6.5)


def test_a_vocabulary_repeats_no_token():
    """reliability T16: a repeated token gave 7 ids of which 6 map back (a dead output class)."""
    with pytest.raises(ValueError, match=r"itos.*'a'"):
        text.Vocab(list(text.SPECIALS) + ["a", "b", "a"])
    with pytest.raises(ValueError, match=r"itos.*'<unk>'"):
        text.Vocab(list(text.SPECIALS) + ["<unk>"])


@pytest.mark.parametrize("ids", [[-1], [10**6], [1.7], [4, 5, 6]])
def test_decode_takes_only_ids_of_the_vocabulary(vocab, ids):
    """reliability T18: -1 wrapped around to the last token, 10**6 was a bare IndexError and 1.7 was
    read as <bos>."""
    with pytest.raises(ValueError, match=r"ids .*\[0, 6\)"):
        vocab.decode(ids)


def test_decode_still_takes_integer_tensors_and_numpy_ints(vocab):
    """reliability T18: the check keeps integer ids of any kind."""
    assert vocab.decode(torch.tensor([vocab.bos, 4, 5, vocab.eos, 4])) == ["good", "movie"]
    assert vocab.decode(np.array([4, 5])) == ["good", "movie"]


def test_pad_batch_takes_only_ids_of_the_vocabulary(vocab):
    """reliability T21: ids 999 and -5 were padded, then ARAE.encode raised 'index out of range in self'."""
    with pytest.raises(ValueError, match=r"sequences\[0\].*\[0, 6\).*999"):
        text.pad_batch([[4, 999], [-5]], vocab)
    with pytest.raises(ValueError, match=r"sequences\[1\].*\[0, 6\).*-5"):
        text.pad_batch([[4, 5], [-5]], vocab)
    with pytest.raises(ValueError, match=r"sequences\[0\].*1\.7"):
        text.pad_batch([[1.7]], vocab)


# ------------------------------------------------------------------------------------------ the ARAE
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


@pytest.fixture
def model(tiny_corpus):
    torch.manual_seed(0)
    return arae.ARAE(len(tiny_corpus.vocab), embed=8, hidden=8, code=4, noise=4, mlp=8).eval()


def test_a_round_with_a_label_out_of_range_fails_before_any_update(tiny_corpus, model):
    """reliability R05: label 2 of a 2-attribute ARAE was an IndexError deep in cross_entropy, after
    the reconstruction step had already updated the autoencoder."""
    settings = arae.ARAESettings(critic_steps=1)
    stream = tiny_corpus.batches(8, seed=0)
    batches = [next(stream) for _ in range(2)]
    inputs, targets, lengths, labels = batches[0]
    labels = labels.clone()
    labels[0] = 2
    batches[0] = (inputs, targets, lengths, labels)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"labels.*\[0, 1\]"):
        arae.arae_round(model, arae.make_optimizers(model), batches, settings, 0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_transfer_of_no_sentences_is_no_sentences(tiny_corpus, model):
    """reliability R07: [] gave torch.cat's 'expected a non-empty list of Tensors'."""
    assert arae.transfer(model, tiny_corpus.vocab, [], 0) == []
    assert arae.transfer(model, tiny_corpus.vocab, [], []) == []
    with pytest.raises(ValueError, match="attribute"):
        arae.transfer(model, tiny_corpus.vocab, [], 5)


def test_token_accuracy_of_no_rows_is_an_error(tiny_corpus, model):
    """reliability R09: [] gave 0.0, which reads as a measured accuracy of 0%."""
    with pytest.raises(ValueError, match="rows"):
        arae.token_accuracy(model, [], tiny_corpus.vocab)


def test_decoding_takes_at_least_one_step(tiny_corpus, model):
    """reliability R10: max_len=0 gave torch.cat's 'expected a non-empty list of Tensors'."""
    codes = arae.encode_sentences(model, [s for s, _ in tiny_corpus.train[:2]], tiny_corpus.vocab)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_len"):
            arae.decode_codes(model, codes, tiny_corpus.vocab, 0, max_len=bad)
        with pytest.raises(ValueError, match="max_len"):
            arae.transfer(model, tiny_corpus.vocab, [tiny_corpus.train[0][0]], 0, max_len=bad)
    assert [len(t) <= 1 for t in arae.decode_codes(model, codes, tiny_corpus.vocab, 0, max_len=1)] == [True, True]


def test_language_model_steps_must_be_a_positive_integer(tiny_corpus):
    """reliability R13: steps=-3 trained 0 steps without a word."""
    torch.manual_seed(0)
    lm = arae.LanguageModel(len(tiny_corpus.vocab), embed=8, hidden=8)
    before = copy.deepcopy(lm.state_dict())
    ids = [s for s, _ in tiny_corpus.train]
    for bad in (-3, 0, 2.0):
        with pytest.raises(ValueError, match="steps"):
            arae.train_language_model(lm, ids, tiny_corpus.vocab, steps=bad, batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
