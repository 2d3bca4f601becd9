"""data.fingerprint: the state of the files under data.path, without reading them."""
import os

import pytest

from refinery.data import DataSourceError, fingerprint


def test_fingerprint_changes_when_a_file_changes_and_only_then(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"1234")
    (tmp_path / "b.png").write_bytes(b"5678")
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    stat = (tmp_path / "b.png").stat()
    (tmp_path / "b.png").write_bytes(b"9999")  # same size, new content and time
    os.utime(tmp_path / "b.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    edited = fingerprint(tmp_path)
    assert edited != first
    (tmp_path / "a" / "y.png").write_bytes(b"")
    assert fingerprint(tmp_path) not in (first, edited)


def test_fingerprint_of_a_single_file_and_of_a_missing_path(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"x")
    assert len(fingerprint(tmp_path / "d.npz")) == 16
    with pytest.raises(DataSourceError, match="nope.npz: not found"):
        fingerprint(tmp_path / "nope.npz")
