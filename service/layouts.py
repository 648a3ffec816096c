"""Uploaded layouts: the images a cascade job starts from (POST /v1/layouts).

An upload is checked before anything is kept: its Content-Type is PNG, JPEG or TIFF and
its first bytes are that format's signature (415 otherwise), then its header and content
pass gigasynth.decoding's rules (one frame, a mode with a white, at most
MAX_LAYOUT_PIXELS pixels, compressed data that can hold them, and a decode that is not
truncated; 422 otherwise, one line). A good upload is kept as sent, under
`<data dir>/layouts/<token id>/<sha256 of its bytes>` (written atomically, so a reader
never sees part of one), and its id is that hash: uploading the same bytes again gives
the same id. A job decodes the layout once, at admission, and keeps its pixels as its
own PNG (`copy_to_job`), so the job, its resume and its viewer never depend on the
upload staying there.

Every decode first takes one of the server's GIGASYNTH_DECODE_SLOTS and reserves the
memory its header says it takes from its GIGASYNTH_DECODE_MEMORY_MB (`DecodeBudget`): a
decode that would not fit waits at most GIGASYNTH_DECODE_WAIT_S, then is a 503 with
Retry-After; one larger than the whole budget is a 422. An upload's check decodes a
JPEG at 1/8 scale and keeps no pixels.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade import layout as cascade_layout
from gigasynth.decoding import check_image, read_header, read_image
from gigasynth.errors import GigasynthError
from gigasynth.images import write_png
from gigasynth_service.errors import ApiError
from gigasynth_service.paths import private_dir

# Content-Type -> the signatures (first bytes) that format starts with.
MEDIA_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}
_LAYOUT_ID = re.compile(r"[0-9a-f]{64}")
NAME = "the layout"  # what decoding's messages call an upload: never a server path
MB = 1 << 20


def is_layout_id(text: str) -> bool:
    return _LAYOUT_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class CheckedLayout:
    """An upload that passed every check: its id (sha256), type and pixel size."""

    id: str
    media_type: str
    width: int
    height: int
    bytes: int


def layout_file(data_dir: Path, token_id: str, layout_id: str) -> Path:
    """Where a token's upload is kept (ids checked: no URL text reaches the path)."""
    if not is_layout_id(layout_id) or not re.fullmatch(r"[0-9a-f]+", token_id):
        raise ValueError(f"not a layout id: {layout_id!r}")
    return data_dir / "layouts" / token_id / layout_id


def media_type_of(content_type: str | None) -> str:
    """The upload's media type from its Content-Type header (parameters ignored); 415
    for anything but PNG, JPEG or TIFF."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        shown = media_type[:60] or "none"
        raise ApiError(
            415,
            f"a layout must be sent as image/png, image/jpeg or image/tiff, "
            f"not Content-Type {shown}",
        )
    return media_type


class DecodeBudget:
    """What layout decodes of this server may hold at once: `slots` decodes (each keeps a
    core busy) and `capacity` bytes in all, of which each reserves what its header says
    it takes (a weighted semaphore)."""

    def __init__(self, capacity: int, slots: int, wait_s: float) -> None:
        self.capacity = capacity
        self.slots = slots
        self.wait_s = wait_s
        self._free = capacity
        self._running = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, since: float | None = None) -> Iterator[None]:
        """Hold a slot and `nbytes` while the block runs: 422 if `nbytes` exceeds the whole
        budget, 503 (Retry-After) if they are not free within `wait_s` of `since` (a
        time.monotonic() reading: when the request arrived, so that time spent waiting
        for a worker thread counts; None: now)."""
        if nbytes > self.capacity:
            raise ApiError(
                422,
                f"the layout needs {nbytes / MB:,.0f} MB to decode, more than this "
                f"service's {self.capacity / MB:,.0f} MB for decoding "
                "(GIGASYNTH_DECODE_MEMORY_MB)",
            )
        deadline = (time.monotonic() if since is None else since) + self.wait_s
        with self._cond:
            while self._free < nbytes or self._running >= self.slots:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApiError(
                        503,
                        "the server is decoding other layouts; try again shortly",
                        {"Retry-After": "2"},
                    )
                self._cond.wait(left)
            self._free -= nbytes
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._free += nbytes
                self._running -= 1
                self._cond.notify_all()


def _refused(exc: GigasynthError) -> ApiError:
    return ApiError(422, str(exc))


def check_upload(
    data: bytes, media_type: str, budget: DecodeBudget, since: float | None = None
) -> CheckedLayout:
    """The checked upload, or an ApiError in one line: 400 for an empty body, 415 for
    bytes that are not the declared format, 422 for an image the decoding rules refuse
    (undecodable, truncated, empty, too many pixels, several frames, no white), 503
    while the decode budget is taken (its wait counted from `since`). Decoded in memory:
    no file, no path."""
    if not data:
        raise ApiError(400, "the layout is empty (0 bytes): send the image as the request body")
    if not data.startswith(MEDIA_TYPES[media_type]):
        raise ApiError(
            415, f"the layout is not a {media_type.split('/')[1].upper()} image (its first bytes)"
        )
    max_pixels = cascade_layout.MAX_LAYOUT_PIXELS
    try:
        header = read_header(data, NAME, max_pixels)
        with budget.reserve(header.check_bytes, since):
            check_image(data, NAME, max_pixels)
    except GigasynthError as exc:
        raise _refused(exc) from None
    layout_id = hashlib.sha256(data).hexdigest()
    return CheckedLayout(layout_id, media_type, header.width, header.height, len(data))


def keep_upload(data_dir: Path, token_id: str, checked: CheckedLayout, data: bytes) -> Path:
    """Write a checked upload to its place (atomically: whole or not at all)."""
    path = layout_file(data_dir, token_id, checked.id)
    private_dir(path.parent)
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def no_such_layout(layout_id: str) -> ApiError:
    """The 404 of a layout that is not (or no longer) there: its id, never its path."""
    return ApiError(404, f"no such layout: {layout_id} (upload it first: POST /v1/layouts)")


@dataclass(frozen=True)
class LayoutFile:
    """The layout image a job names (an upload, or a job's own copy on retry): its file,
    its size as its header states it (known before any decode) and its id."""

    id: str
    path: Path
    width: int
    height: int

    def decode(self, budget: DecodeBudget, held: ExitStack) -> np.ndarray:
        """Its pixels, (H, W, 3) uint8, decoded within `budget`, whose memory stays
        reserved until `held` closes (the pixels live on until the job's copy is
        written); 404 if the file went away (a layout deleted meanwhile), 422 for what
        the decoding rules refuse."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise no_such_layout(self.id) from None
        max_pixels = cascade_layout.MAX_LAYOUT_PIXELS
        try:
            header = read_header(data, NAME, max_pixels)
            held.enter_context(budget.reserve(header.decode_bytes))
            return read_image(data, NAME, max_pixels)
        except GigasynthError as exc:
            raise _refused(exc) from None


def copy_to_job(rgb: np.ndarray, job_layout: Path) -> None:
    """The layout's decoded pixels to the job's own PNG (written atomically): what the
    job runs on and what its viewer shows."""
    private_dir(job_layout.parent)
    write_png(job_layout, rgb)
