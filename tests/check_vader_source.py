"""CI check that the public source of the sentiment corpus is still what advlib.text pins: downloads
the source distribution of vaderSentiment 3.3.2 with pip (``pip download --no-deps --no-binary :all:``)
and checks its SHA-256 and that of every corpus file inside it (the checksums of advlib.text, which
are also those of the offline copy). Exits non-zero on any mismatch or failure.

Usage: python tests/check_vader_source.py
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from advlib import text  # noqa: E402

REQUIREMENT = "vaderSentiment==3.3.2"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-cache-dir",
               "-q", "-d", tmp, REQUIREMENT]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            print(f"FAIL: {' '.join(cmd)} exited {done.returncode}\n{done.stdout}{done.stderr}", file=sys.stderr)
            return 1
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if [a.name for a in archives] != ["vaderSentiment-3.3.2.tar.gz"]:
            print(f"FAIL: pip downloaded {[p.name for p in Path(tmp).iterdir()]}, not one "
                  f"vaderSentiment-3.3.2.tar.gz", file=sys.stderr)
            return 1
        blob = archives[0].read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    print(f"{digest}  {archives[0].name} ({len(blob):,} bytes; pinned {text.VADER_SDIST_SHA256})")
    try:
        files = text.sentiment_files_from_sdist(blob, sha256=text.VADER_SDIST_SHA256, source=archives[0].name)
    except ValueError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    for name, content in files.items():
        print(f"{hashlib.sha256(content).hexdigest()}  {name} ({len(content):,} bytes)")
    print(f"OK: the {REQUIREMENT} sdist and its {len(files)} corpus files match the pinned SHA-256")
    return 0


if __name__ == "__main__":
    sys.exit(main())
