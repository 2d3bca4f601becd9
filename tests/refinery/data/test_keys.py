"""Stable sample keys: splits from key hashes never move a sample when others are added; keys of
an image folder are its paths; content keys tell exact duplicates apart."""
from __future__ import annotations

import numpy as np
from PIL import Image

from refinery.data import TEST, TRAIN, VAL, load_source
from refinery.data.keys import content_hashes, content_keys, hash_rank, key_split


def test_adding_samples_moves_no_existing_sample():
    keys = np.array([f"cls{i % 3}/img{i}.png" for i in range(500)], dtype=object)
    more = np.concatenate([keys[:250], np.array([f"new/{i}.png" for i in range(300)], dtype=object), keys[250:]])
    before, after = key_split(keys, 0.1, 0.2, seed=0), key_split(more, 0.1, 0.2, seed=0)
    position = {k: i for i, k in enumerate(more.tolist())}
    assert all(after[position[k]] == s for k, s in zip(keys.tolist(), before))
    shares = [np.mean(before == code) for code in (TRAIN, VAL, TEST)]
    assert abs(shares[0] - 0.7) < 0.06 and abs(shares[1] - 0.1) < 0.04 and abs(shares[2] - 0.2) < 0.05
    assert not np.array_equal(before, key_split(keys, 0.1, 0.2, seed=1))  # the seed still draws the split


def test_published_test_split_is_kept():
    keys = np.array([str(i) for i in range(100)], dtype=object)
    test = np.arange(100) >= 80
    split = key_split(keys, 0.1, 0.2, seed=0, published_test=test)
    assert (split[test] == TEST).all() and not (split[~test] == TEST).any() and (split[~test] == VAL).any()


def test_image_folder_keys_are_relative_paths(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 4), 40 * i + (c == "b"), np.uint8)).save(tmp_path / c / f"{i}.png")
    source = load_source("imagefolder", path=tmp_path)
    assert source.keys.tolist() == [f"{c}/{i}.png" for c in "ab" for i in range(3)]


def test_content_hashes_and_duplicate_keys():
    x = np.zeros((3, 1, 2, 2), np.float32)
    x[1] += 1
    hashes = content_hashes(x)
    assert hashes[0] == hashes[2] != hashes[1]
    keys = content_keys(x, np.array([0, 0, 0]))
    assert keys[2] == f"{keys[0]}#2" and len(set(keys.tolist())) == 3


def test_hash_rank_ignores_load_order():
    keys = np.array([f"k{i}" for i in range(50)], dtype=object)
    assert hash_rank(0, keys, "r1").tolist() == hash_rank(0, keys[::-1].copy(), "r1").tolist()
