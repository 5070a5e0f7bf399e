"""Cache-key fingerprints of waveform day files: remembered across builds, never trusted
after the file changed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import flows.caching as caching


def _fingerprint_in_new_process(path: Path, env: dict[str, str]) -> str:
    """``file_fingerprint(path)`` computed by a fresh Python process (a later build)."""
    code = "import sys; from pathlib import Path; import flows.caching as c; " + (
        "print(c.file_fingerprint(Path(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_day_file_hash_is_remembered_across_processes_and_redone_after_a_change(tmp_path):
    env = {**os.environ, "EQCAT_CACHE_DIR": str(tmp_path / "cache")}
    day = tmp_path / "XX.X01..HHZ.D.2000.282"
    day.write_bytes(b"A" * 4096)
    first = _fingerprint_in_new_process(day, env)
    assert first.endswith(":" + caching.sha256_file(day))
    assert (tmp_path / "cache" / "file_hashes.sqlite").is_file()

    # A later build takes the hash from the store instead of reading the file again: a
    # marker written into the store for this file state comes back.
    store = sqlite3.connect(tmp_path / "cache" / "file_hashes.sqlite")
    (count,) = store.execute("SELECT count(*) FROM file_hash").fetchone()
    assert count == 1
    store.execute("UPDATE file_hash SET sha256 = 'remembered'")
    store.commit()
    assert _fingerprint_in_new_process(day, env).endswith(":remembered")

    # Same size and mtime, other content (what `cp -p` or rsync -a can leave): hashed again.
    stat = day.stat()
    day.write_bytes(b"B" * 4096)
    os.utime(day, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _fingerprint_in_new_process(day, env)
    assert again != first
    assert again.endswith(":" + caching.sha256_file(day))


def test_an_upgraded_library_changes_every_cache_key(monkeypatch):
    """The code version that enters every cache key covers the libraries that compute."""
    before = caching.code_version.__wrapped__()
    upgraded = {**caching.software_versions(), "tensorflow": "99.0"}
    monkeypatch.setattr(caching, "software_versions", lambda: upgraded)
    assert caching.code_version.__wrapped__() != before
