"""The sentiment corpus's download (advlib.text.download_sentiment_corpus): a copy of the vaderSentiment
3.3.2 source distribution, built from the offline files, is served by a local HTTP server; a good copy
lands in the cache and reads as the corpus, a corrupted or malformed copy is refused with nothing
written, and offline the error is the one it always was. No test reaches the real network."""
import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from advlib import data, text

OFFLINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "sentiment"
CORPUS_FILES = [name for name in text.SENTIMENT_SHA256 if name != "LICENSE-vaderSentiment.txt"]

pytestmark = pytest.mark.skipif(not all((OFFLINE / n).is_file() for n in text.SENTIMENT_SHA256),
                                reason="needs the offline corpus in ../shared/data/text/sentiment")


def tar_gz(members: dict[str, bytes | str]) -> bytes:
    """A .tar.gz of regular files (``bytes``) and symbolic links (``str``, the link's target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def sdist(files: dict[str, bytes | str], extra_inner: dict[str, bytes | str] | None = None) -> bytes:
    """A copy of the sdist's layout: the licence at the top and the ground-truth files under
    ``hutto_ICWSM_2014/`` in ``additional_resources/hutto_ICWSM_2014.tar.gz``."""
    inner = {f"hutto_ICWSM_2014/{n}": files[n] for n in CORPUS_FILES}
    inner.update(extra_inner or {})
    return tar_gz({"vaderSentiment-3.3.2/LICENSE.txt": files["LICENSE-vaderSentiment.txt"],
                   "vaderSentiment-3.3.2/setup.py": b"# not run\n",
                   text.VADER_INNER_ARCHIVE: tar_gz(inner)})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a local server over copies of the sdist: ``good``, ``corrupt`` (one byte of the
    movie file changed), ``symlink`` (the tweets file a link, plus a member climbing out of the
    folder) and ``missing`` (no tweets file)."""
    files = {n: (OFFLINE / n).read_bytes() for n in text.SENTIMENT_SHA256}
    corrupt = dict(files)
    movie = bytearray(files["movieReviewSnippets_GroundTruth.txt"])
    movie[1000] ^= 0x01
    corrupt["movieReviewSnippets_GroundTruth.txt"] = bytes(movie)
    linked = dict(files, **{"tweets_GroundTruth.txt": "/etc/passwd"})
    served = tmp_path_factory.mktemp("served")
    (served / "good.tar.gz").write_bytes(sdist(files))
    (served / "corrupt.tar.gz").write_bytes(sdist(corrupt))
    (served / "symlink.tar.gz").write_bytes(sdist(linked, {"../../escaped.txt": b"outside\n"}))
    missing = tar_gz({"vaderSentiment-3.3.2/LICENSE.txt": files["LICENSE-vaderSentiment.txt"],
                      text.VADER_INNER_ARCHIVE: tar_gz({f"hutto_ICWSM_2014/{n}": files[n]
                                                        for n in CORPUS_FILES[:-1]})})
    (served / "missing.tar.gz").write_bytes(missing)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, the only data root besides ``root=``; ``is_online`` is never asked."""
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "is_online", lambda *a, **k: pytest.fail("is_online must be stubbed by the test"))
    return data.default_cache_root()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_pinned_checksums_are_those_of_the_offline_copy():
    assert {n: sha256_of(OFFLINE / n) for n in text.SENTIMENT_SHA256} == text.SENTIMENT_SHA256
    assert set(CORPUS_FILES) == set(text.SENTIMENT_FILES.values())


def test_a_good_copy_lands_checked_and_reads_as_the_corpus(server, tmp_path, cache):
    base, served = server
    sha = sha256_of(served / "good.tar.gz")
    folder = text.download_sentiment_corpus(tmp_path / "root", url=f"{base}/good.tar.gz", sha256=sha)
    assert folder == tmp_path / "root" / "text" / "sentiment"
    assert sorted(p.name for p in folder.iterdir()) == sorted(text.SENTIMENT_SHA256)  # no temporary file left
    for name in text.SENTIMENT_SHA256:
        assert (folder / name).read_bytes() == (OFFLINE / name).read_bytes()
    assert len(text.sentiment_sentences(root=tmp_path / "root", download=False)) == 23_703
    # sha256=None skips only the sdist's own checksum: the files are still checked
    again = text.download_sentiment_corpus(tmp_path / "again", url=f"{base}/good.tar.gz", sha256=None)
    assert {n: sha256_of(again / n) for n in text.SENTIMENT_SHA256} == text.SENTIMENT_SHA256
    assert not cache.exists()  # root= given: the cache is not touched


def test_the_sdist_checksum_is_checked(server, tmp_path, cache):
    base, _ = server
    with pytest.raises(ValueError, match=r"good\.tar\.gz does not match its checksum: SHA-256 [0-9a-f]{64}, "
                                         rf"expected {text.VADER_SDIST_SHA256}"):
        text.download_sentiment_corpus(tmp_path, url=f"{base}/good.tar.gz")  # the pinned checksum: not this copy
    assert not (tmp_path / "text").exists()


def test_a_corrupted_copy_is_refused_and_nothing_is_written(server, tmp_path, cache):
    base, _ = server
    expected = text.SENTIMENT_SHA256["movieReviewSnippets_GroundTruth.txt"]
    with pytest.raises(ValueError, match=rf"movieReviewSnippets_GroundTruth\.txt from {base}/corrupt\.tar\.gz does "
                                         rf"not match its checksum: SHA-256 [0-9a-f]{{64}}, expected {expected}"):
        text.download_sentiment_corpus(tmp_path, url=f"{base}/corrupt.tar.gz", sha256=None)
    assert not (tmp_path / "text").exists()


@pytest.mark.parametrize("copy, message", [("symlink", r"tweets_GroundTruth\.txt .*not a regular file"),
                                           ("missing", r"holds no hutto_ICWSM_2014/tweets_GroundTruth\.txt")])
def test_a_malformed_copy_is_refused_and_nothing_is_written(server, tmp_path, cache, copy, message):
    """A link in place of a file, or a missing file, is refused; a member named ``../../escaped.txt``
    is never written anywhere (only the expected members are read)."""
    base, _ = server
    root = tmp_path / "a" / "b"
    with pytest.raises(ValueError, match=message):
        text.download_sentiment_corpus(root, url=f"{base}/{copy}.tar.gz", sha256=None)
    assert not root.exists() and not list(tmp_path.rglob("escaped.txt"))


def test_not_a_tar_gz_is_refused(server, tmp_path, cache):
    base, served = server
    (served / "page.html").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"page\.html is not a readable \.tar\.gz"):
        text.download_sentiment_corpus(tmp_path, url=f"{base}/page.html", sha256=None)
    assert not (tmp_path / "text").exists()


# ---------------------------------------------------------------------- through sentiment_sentences
def point_at(monkeypatch, base: str, copy: str, online: bool = True) -> list:
    """Make ``sentiment_sentences`` download ``copy`` from the local server; return the hosts asked about."""
    asked = []
    monkeypatch.setattr(text, "VADER_SDIST_URL", f"{base}/{copy}.tar.gz")
    monkeypatch.setattr(text, "VADER_SDIST_SHA256", None)
    monkeypatch.setattr(data, "is_online", lambda host, *a, **k: asked.append(host) or online)
    return asked


def test_online_a_missing_corpus_is_downloaded_into_the_cache(server, tmp_path, cache, monkeypatch):
    base, _ = server
    asked = point_at(monkeypatch, base, "good")
    sents = text.sentiment_sentences(root=tmp_path / "empty", sources=["tweets"])
    assert len(sents) == 4200 and asked == ["127.0.0.1"]
    assert {n: sha256_of(cache / "text" / "sentiment" / n) for n in text.SENTIMENT_SHA256} == text.SENTIMENT_SHA256
    monkeypatch.setattr(data, "is_online", lambda *a, **k: pytest.fail("the cached copy is found first"))
    assert len(text.sentiment_sentences(root=tmp_path / "empty")) == 23_703


def test_online_a_corrupted_download_is_a_data_not_found_error_naming_the_mismatch(server, tmp_path, cache,
                                                                                   monkeypatch):
    base, _ = server
    point_at(monkeypatch, base, "corrupt")
    with pytest.raises(data.DataNotFoundError, match=r"(?s)text/sentiment/movieReviewSnippets_GroundTruth\.txt.*"
                                                     r"download from .*corrupt\.tar\.gz failed: ValueError: "
                                                     r"movieReviewSnippets_GroundTruth\.txt .*does not match"):
        text.sentiment_sentences(root=tmp_path)
    assert not cache.exists()


def test_online_an_unreachable_source_is_a_data_not_found_error(tmp_path, cache, monkeypatch):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_at(monkeypatch, f"http://127.0.0.1:{port}", "good")
    with pytest.raises(data.DataNotFoundError, match=r"(?s)ADVLIB_DATA.*download from .* failed: URLError"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])
    assert not cache.exists()


def test_offline_the_error_is_as_before_and_names_the_source(tmp_path, cache, monkeypatch):
    asked = point_at(monkeypatch, "http://127.0.0.1:9", "good", online=False)
    with pytest.raises(data.DataNotFoundError, match=r"(?s)not found, and it could not be downloaded \(offline, "
                                                     r"or download=False\).*<root>/text/sentiment/tweets_GroundTruth"
                                                     r"\.txt.*vaderSentiment 3\.3\.2"):
        text.sentiment_sentences(root=tmp_path, sources=["tweets"])
    assert asked == ["127.0.0.1"]
    with pytest.raises(data.DataNotFoundError, match="ADVLIB_DATA"):
        text.sentiment_sentences(root=tmp_path, download=False)
    assert asked == ["127.0.0.1"]  # download=False does not even ask
    assert not cache.exists()
