"""An image-folder tree, root/<class>/<image> (the torchvision ImageFolder layout), read with
Pillow. Classes are the sub-folder names in sorted order. Every path must stay inside the
root: a symlink or `..` that leads out of it is refused, so a config cannot read arbitrary
files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataSourceError, Source, existing, finish

EXTENSIONS = {".png", ".jpg", ".jpeg"}


def _inside(path: Path, root: Path) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise DataSourceError(f"{path}: leads outside the data folder {root} (symlink or '..'); refused")
    return resolved


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, class id)]) in a deterministic order."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataSourceError(f"{root}: no class folders (expected root/<class>/<image>)")
    items = []
    for label, name in enumerate(classes):
        folder = _inside(root / name, root)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise DataSourceError(f"{root / name}: class folder has no PNG/JPEG images")
        items += [(_inside(p, root), label) for p in files]
    return classes, items


def _open(path: Path, resize: tuple[int, int] | None):
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            image = img.convert("L") if img.mode in ("1", "L", "I;16", "I") else img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataSourceError(f"{path}: cannot read image ({exc})") from None
    if resize is not None:
        image = image.resize((resize[1], resize[0]), Image.BILINEAR)
    return image


def load_imagefolder(path: Path | str | None = None, resize: tuple[int, int] | None = None,
                     **_: object) -> Source:
    root = existing(path, "imagefolder")
    if not root.is_dir():
        raise DataSourceError(f"{root}: expected a folder of class folders")
    root = root.resolve()
    classes, items = list_images(root)
    images = [_open(p, resize) for p, _ in items]
    # Grey images join a colour dataset as RGB; an all-grey dataset keeps one channel.
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    first = images[0].size
    arrays = []
    for (p, _), im in zip(items, images):
        if im.size != first:
            raise DataSourceError(f"{p}: image size {im.size[0]}x{im.size[1]} differs from {items[0][0].name}'s "
                                  f"{first[0]}x{first[1]}; set data.resize: [H, W]")
        a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    y = np.array([label for _, label in items], dtype=np.int64)
    keys = np.array([p.relative_to(root).as_posix() for p, _ in items], dtype=object)  # stable: the file's path
    return finish(np.stack(arrays), y, str(root), num_classes=len(classes), keys=keys)
