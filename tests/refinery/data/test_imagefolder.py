"""root/<class>/<image> trees load with Pillow; bad trees fail with one line naming the file."""
import numpy as np
import pytest
from PIL import Image

from refinery.data import DataSourceError, load_source


def write_tree(root, sizes=((8, 6),) * 3, classes=("cat", "dog"), fmt="png", mode="RGB"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.{fmt}")
    return root


def test_png_tree_loads_channels_first_with_sorted_classes(tmp_path):
    root = write_tree(tmp_path / "imgs")
    src = load_source("imagefolder", path=root)
    assert src.x.shape == (6, 3, 6, 8) and src.num_classes == 2
    assert src.y.tolist() == [0, 0, 0, 1, 1, 1]
    pixels = np.asarray(Image.open(root / "cat" / "0.png"), dtype=np.float32) / 255
    assert np.allclose(src.x[0], pixels.transpose(2, 0, 1))


def test_grey_jpeg_tree(tmp_path):
    src = load_source("imagefolder", path=write_tree(tmp_path / "g", fmt="jpg", mode="L"))
    assert src.x.shape == (6, 1, 6, 8)


def test_mixed_sizes_need_resize(tmp_path):
    root = write_tree(tmp_path / "m", sizes=((8, 6), (9, 6)))
    with pytest.raises(DataSourceError, match=r"1\.png: image size 9x6 differs.*data.resize"):
        load_source("imagefolder", path=root)
    assert load_source("imagefolder", path=root, resize=(4, 5)).x.shape == (4, 3, 4, 5)


def test_empty_class_and_escaping_symlink_are_refused(tmp_path):
    root = write_tree(tmp_path / "e")
    (root / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"empty: class folder has no PNG/JPEG"):
        load_source("imagefolder", path=root)
    (root / "empty").rmdir()
    outside = write_tree(tmp_path / "outside", classes=("x",))
    (root / "cat" / "link.png").symlink_to(outside / "x" / "0.png")
    with pytest.raises(DataSourceError, match="link.png: leads outside the data folder"):
        load_source("imagefolder", path=root)
    (root / "cat" / "link.png").unlink()
    (root / "sneaky").symlink_to(outside / "x")
    with pytest.raises(DataSourceError, match="sneaky: leads outside"):
        load_source("imagefolder", path=root)


def test_corrupt_image_names_the_file(tmp_path):
    root = write_tree(tmp_path / "c")
    (root / "dog" / "1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataSourceError, match=r"dog/1\.png: cannot read image"):
        load_source("imagefolder", path=root)
