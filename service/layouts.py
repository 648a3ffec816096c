"""Uploaded layouts: the images a cascade job starts from (POST /v1/layouts).

An upload is checked before anything is kept: its Content-Type is PNG, JPEG or TIFF and
its first bytes are that format's signature (415 otherwise), then its content passes
gigasynth.cascade.layout.read_layout's checks (a decodable image, not empty, at most
MAX_LAYOUT_PIXELS pixels; 422 otherwise, one line). A good upload is kept as sent, under
`<data dir>/layouts/<token id>/<sha256 of its bytes>` (written atomically, so a reader
never sees part of one), and its id is that hash: uploading the same bytes again gives
the same id. A job copies the layout's pixels into its own folder as PNG when it is
accepted (`copy_to_job`), so the job, its resume and its viewer never depend on the
upload staying there.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade.layout import read_layout
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
# The name the upload is checked under: no suffix, so read_layout takes it as an image (a
# .tif would be offered to OpenSlide as a slide), and its messages name no server path.
_CHECKED_NAME = "upload"


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


def check_upload(data_dir: Path, data: bytes, media_type: str) -> CheckedLayout:
    """The checked upload, or an ApiError in one line: 400 for an empty body, 415 for
    bytes that are not the declared format, 422 for an image read_layout refuses
    (undecodable, empty, too many pixels). It is decoded from a private temporary file
    in the data dir's layouts folder, gone when this returns."""
    if not data:
        raise ApiError(400, "the layout is empty (0 bytes): send the image as the request body")
    if not data.startswith(MEDIA_TYPES[media_type]):
        raise ApiError(
            415, f"the layout is not a {media_type.split('/')[1].upper()} image (its first bytes)"
        )
    folder = private_dir(data_dir / "layouts")
    with tempfile.TemporaryDirectory(prefix=".checking-", dir=folder) as tmp:
        path = Path(tmp) / _CHECKED_NAME
        path.write_bytes(data)
        try:
            rgb = read_layout(path, 1.0)  # an image: taken as it is, whatever the µm/px
        except GigasynthError as exc:
            message = str(exc).replace(f"layout {path}", "the layout")
            raise ApiError(422, message.replace(str(path), "the layout")) from None
    layout_id = hashlib.sha256(data).hexdigest()
    return CheckedLayout(layout_id, media_type, rgb.shape[1], rgb.shape[0], len(data))


def keep_upload(data_dir: Path, token_id: str, checked: CheckedLayout, data: bytes) -> Path:
    """Write a checked upload to its place (atomically: whole or not at all)."""
    path = layout_file(data_dir, token_id, checked.id)
    private_dir(path.parent)
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def copy_to_job(upload: Path, job_layout: Path) -> None:
    """The upload's pixels, as read_layout reads them, to the job's own PNG (written
    atomically): what the job runs on and what its viewer shows."""
    private_dir(job_layout.parent)
    write_png(job_layout, read_layout(upload, 1.0))
