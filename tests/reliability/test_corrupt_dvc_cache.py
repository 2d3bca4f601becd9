"""A corrupted DVC cache object is never restored silently. Flip one bit in the cache file of
data/prepared/forget.parquet (keeping its modification time), delete dvc.lock so that every
stage comes back from DVC's run cache, and rerun: the restored file does not match the hash the
prepare stage recorded when it ran, so prepare reruns, says so, and the request is unchanged."""
import hashlib
import os

import pytest
import yaml

from tests.project import run


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


def cache_file(project, out: str):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == out)
    return project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def restore_everything(project) -> str:
    (project / "dvc.lock").unlink()
    (project / ".dvc" / "tmp" / "dvc.lock.previous").unlink(missing_ok=True)
    result = run(project, "refinery", "run")
    return result.stdout + result.stderr


def test_a_corrupted_cache_object_is_not_restored(project):
    out = "data/prepared/forget.parquet"
    original = (project / out).read_bytes()
    # one restore first, as in a long-lived workspace: DVC now knows the cache objects' hashes
    # by their size, time and inode, and will not read them again while those stay the same
    assert "prepare=restored" in restore_everything(project)
    obj = cache_file(project, out)
    stat = obj.stat()
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    obj.chmod(stat.st_mode)  # read-only again, and the old time: to DVC the object looks untouched
    os.utime(obj, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    text = restore_everything(project)
    assert "forget.parquet" in text and "other content" in text, text[-3000:]
    assert "ran: prepare" in text, text[-3000:]
    assert (project / out).read_bytes() == original
    assert "up to date" in run(project, "dvc", "status").stdout
    # the corrupt object was replaced by the rerun's bytes: DVC's cache is whole again
    assert hashlib.md5(cache_file(project, out).read_bytes()).hexdigest() == cache_file(project, out).parent.name \
        + cache_file(project, out).name
