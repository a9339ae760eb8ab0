"""Dataset files: atomic writes (a temporary file in the same folder, fsync-free, then a
rename) and lossless PNG encoding."""
from __future__ import annotations

import errno
import json
import os
import struct

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


TEMP_PREFIX = ".tmp-"


def temp_target(name: str):
    """The file name an AtomicFile temporary ``name`` was to become, or None if ``name`` is
    not one (its random part is hex: no '-')."""
    if not name.startswith(TEMP_PREFIX):
        return None
    parts = name.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[2] else None


class AtomicFile:
    """A file that appears at ``path`` complete or not at all: written to a temporary sibling
    (``.tmp-<random>-<name>``, see temp_target) and renamed by :meth:`commit`;
    :meth:`discard`, or an exception inside ``with``, removes it. Every dataset file simgen
    writes goes through here."""

    def __init__(self, path: str, mode: str = "wb"):
        self.path = path
        folder, name = os.path.split(path)
        while True:  # tempfile.mkstemp would make it 0600 whatever the umask: open it as any tool does
            self.tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.urandom(6).hex()}-{name}")
            try:
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                break
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue
        self._f = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))

    def write(self, data) -> None:
        self._f.write(data)

    def commit(self) -> None:
        self._f.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self._f.close()
        try:
            os.unlink(self.tmp)
        except OSError:  # committed already, or never made
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def os_error_reason(exc: OSError) -> str:
    """A failed write in words: "the disk is full" (ENOSPC, EDQUOT), else the OS's own text."""
    import errno

    return "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))


def atomic_write_bytes(path: str, data: bytes) -> None:
    with AtomicFile(path) as f:
        f.write(data)


def load_json(path: str, what: str, fix: str):
    """The JSON document at ``path``; a missing or unparsable file is a SimGenError naming
    ``what`` it should be and the ``fix``."""
    from .errors import SimGenError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SimGenError(f"{path}: no such file ({what} was expected; fix: {fix})") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SimGenError(f"{path} is not JSON ({type(exc).__name__}; {what} was expected); fix: {fix}") from None


def atomic_write_json(path: str, obj, indent=None) -> None:
    text = json.dumps(obj, indent=indent, sort_keys=False, separators=(",", ":") if indent is None else None)
    atomic_write_bytes(path, text.encode("utf-8"))


FAST_PNG_LEVELS = 3  # levels up to this one: simgen's PNG writer on zlib-ng (below); above: libpng


def _filtered_rows(image: np.ndarray) -> np.ndarray:
    """PNG scanlines of an (H,W,3) uint8 or (H,W) uint8/uint16 image, each row prefixed by
    its filter type: 'sub' (1) for RGB, 'up' (2) for single-channel maps (PNG spec 9.2:
    differences modulo 256 of the bytes, 16-bit samples big-endian)."""
    h = image.shape[0]
    raw = np.ascontiguousarray(image, dtype=">u2" if image.dtype == np.uint16 else np.uint8)
    raw = raw.view(np.uint8).reshape(h, -1)
    rows = np.empty((h, raw.shape[1] + 1), dtype=np.uint8)
    if image.ndim == 3:
        rows[:, 0] = 1
        rows[:, 1:4] = raw[:, :3]
        np.subtract(raw[:, 3:], raw[:, :-3], out=rows[:, 4:])
    else:
        rows[:, 0] = 2
        rows[0, 1:] = raw[0]
        np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
    return rows


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    from zlib_ng import zlib_ng

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib_ng.crc32(data, zlib_ng.crc32(kind)))


def encode_png(image: np.ndarray, compression: int = 1, labels: bool = False) -> bytes:
    """Lossless PNG bytes of (H,W) uint8/uint16 or (H,W,3) uint8 RGB (stored as RGB).
    ``labels``: a 2-D map of ids (few distinct values in flat regions), e.g. instance masks.

    At the fast levels (0..3) simgen writes the PNG itself: one fixed row filter per content
    instead of libpng's adaptive choice (which tries all five filters on every row: 2.5x
    slower on our renders, files within a few percent), deflated by zlib-ng, 2.5-4x faster
    than zlib at the same level and the same sizes. The zlib strategy is chosen per content,
    as measured on every scene template and on noisy edge cases: RGB 'sub' + run-length
    matches (tabletop 70 -> 57 KB; with sensor noise half the time); label maps 'up' +
    run-length (half the size, same time); depth 'up' with the default matching (run-length
    alone makes it up to 10x larger). Higher levels go through libpng (OpenCV) with its
    adaptive filters and default matching: who asks for them wants the smallest files.
    """
    image = np.asarray(image)
    if not ((image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8)
            or (image.ndim == 2 and image.dtype in (np.uint8, np.uint16))) or 0 in image.shape:
        raise ValueError(f"encode_png takes (H,W,3) uint8 or (H,W) uint8/uint16, got {image.shape} {image.dtype}")
    if int(compression) <= FAST_PNG_LEVELS:
        from zlib_ng import zlib_ng

        strategy = zlib_ng.Z_RLE if image.ndim == 3 or labels else zlib_ng.Z_DEFAULT_STRATEGY
        z = zlib_ng.compressobj(int(compression), zlib_ng.DEFLATED, 15, 8, strategy)
        idat = z.compress(_filtered_rows(image)) + z.flush()
        h, w = image.shape[:2]
        ihdr = struct.pack(">IIBBBBB", w, h, image.itemsize * 8, 2 if image.ndim == 3 else 0, 0, 0, 0)
        return PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    import cv2

    # OpenCV wants BGR (cvtColor swaps ~50x faster than a numpy copy of a reversed view)
    arr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def read_png(path: str) -> np.ndarray:
    """Read a PNG written by :func:`encode_png` (RGB order, bit depth kept). A missing file
    raises FileNotFoundError (checked first: OpenCV would only print a warning), an
    unreadable one OSError."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img[..., ::-1].copy() if img.ndim == 3 else img
