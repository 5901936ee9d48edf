"""A folder of watchlist photos uploaded from the browser, read into memory with limits.

The Watchlist page's build form (``console.watchlist_build_page``) sends the folder a
supervisor picked (``<input type=file webkitdirectory>``) as ``multipart/form-data``: one part
``photo`` per file, its file name the path inside the picked folder
(``top/<subject>/<photo>``, as the browser's ``webkitRelativePath`` gives it). As
``lfr watchlist build`` takes a folder on disk, each sub-folder is one subject and its name the
subject id.

Guarantees:

- **Memory only.** The body is read part by part with aiohttp's multipart reader (never
  ``request.post()``, which spools large files to a temporary file): each photo goes into its
  own ``bytearray``, wiped by ``PhotoUpload.wipe`` (and on any refusal before the upload is
  returned). Nothing is written to disk.
- **Limits while streaming** (``PhotoUploadLimits``): the number of files, the bytes of one
  file and the bytes of all of them are counted as the bytes arrive; the first file that
  passes one is refused at once (413) with a text naming the file and the limit, before more
  of it is read. Names are bounded too, and shown through ``printable``.
- **Only photos the loader takes**: a file kept must have a JPEG, PNG or WebP name
  (``lfr.watchlist_build.PHOTO_SUFFIXES``) and begin with that format's signature; hidden files
  are passed over, other files and files not inside a subject folder (or deeper than one) are
  read to their end, dropped and named in ``PhotoUpload.skipped`` with the reason, as
  ``lfr watchlist build`` reports them. Decoding (``models.image_io.decode_rgb``, with its pixel
  and shape limits) happens later, in the build.
- **Subject ids**: a sub-folder whose name cannot be a subject id (not printable, too long)
  refuses the upload (400) naming it, as ``lfr watchlist build`` refuses the folder.
- Every refusal is one ``UploadRefused`` with its HTTP status and a printable text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aiohttp import BodyPartReader, web

from actors.unit.watchlist import MAX_SUBJECT_ID_CHARS
from guards.config_checks import require_at_least
from guards.log_text import printable
from lfr.watchlist_build import PHOTO_SUFFIXES
from secure.memory_wipe import wipe_buffer

PHOTO_FIELD: Final = "photo"
"""The name of every file part."""
READ_CHUNK_BYTES: Final = 256 * 1024
"""Bytes read from a part at a time."""
MAX_NAME_CHARS: Final = 1024
"""Longest file name (path inside the folder) accepted; longer is refused (400)."""
PART_OVERHEAD_BYTES: Final = 2048
"""Room per part for its multipart headers (the route's body limit allows for them)."""
_SIGNATURES: Final = {
    ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",),
    ".png": (b"\x89PNG\r\n\x1a\n",), ".webp": (b"RIFF",),
}
"""The first bytes of each accepted format (WebP: RIFF, then WEBP at offset 8)."""
_SNIFF_BYTES: Final = 12


@dataclass(frozen=True, slots=True)
class PhotoUploadLimits:
    """What one upload may hold; the defaults fit a van's laptop (a few hundred phone photos)."""

    max_files: int = 2000
    """Files in one upload (photos and anything else the folder holds)."""
    max_file_bytes: int = 20 * 1024 * 1024
    """Bytes of one file: above a phone's 48 MP JPEG."""
    max_total_bytes: int = 512 * 1024 * 1024
    """Bytes of all files together: held in the van's memory until the build ends."""

    def __post_init__(self) -> None:
        require_at_least("PhotoUploadLimits.max_files", self.max_files, 1)
        require_at_least("PhotoUploadLimits.max_file_bytes", self.max_file_bytes, 1)
        require_at_least("PhotoUploadLimits.max_total_bytes", self.max_total_bytes,
                         self.max_file_bytes)

    @property
    def body_bytes(self) -> int:
        """The largest body such an upload makes: the files and their parts' headers."""
        return self.max_total_bytes + (self.max_files + 1) * PART_OVERHEAD_BYTES


class UploadRefused(Exception):
    """An upload refused: its HTTP status and the reason (printable)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(slots=True)
class UploadedPhoto:
    """One photo of a subject, encoded as uploaded (in memory only)."""

    subject: str
    """Its sub-folder: the subject id."""
    name: str
    """Its path inside the picked folder, for messages (shown through ``printable``)."""
    data: bytearray = field(repr=False)
    """The file's bytes; wiped by ``PhotoUpload.wipe``."""


@dataclass(slots=True)
class PhotoUpload:
    """What an upload held: the subjects' photos (in name order) and what was passed over."""

    subjects: dict[str, list[UploadedPhoto]] = field(default_factory=dict)
    """Subject id -> its photos, both sorted by name once read."""
    skipped: list[str] = field(default_factory=list)
    """One printable line per file not kept, saying why."""
    files: int = 0
    """Files the upload held (kept or not)."""
    total_bytes: int = 0
    """Their bytes."""

    @property
    def photos(self) -> int:
        """Photos kept."""
        return sum(len(photos) for photos in self.subjects.values())

    def wipe(self) -> None:
        """Overwrite every photo's bytes and forget them."""
        for photos in self.subjects.values():
            for photo in photos:
                wipe_buffer(photo.data)
        self.subjects.clear()


def _subject_of(name: str) -> tuple[str | None, str]:
    """(subject, why not) for the file named ``name`` (``top/subject/photo``)."""
    parts = name.replace("\\", "/").split("/")
    if any(part.startswith(".") for part in parts[1:]):
        return None, "hidden"
    if len(parts) < 3:
        return None, "not in a subject folder; subjects are sub-folders"
    if len(parts) > 3:
        return None, "in a folder inside a subject folder; not enrolled"
    return parts[1], ""


def _subject_id_problem(subject: str) -> str | None:
    if not subject:
        return "empty"
    if not subject.isprintable():
        return "not printable text"
    if len(subject) > MAX_SUBJECT_ID_CHARS:
        return f"longer than {MAX_SUBJECT_ID_CHARS} characters"
    return None


def _format_problem(name: str, head: bytes) -> str | None:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in PHOTO_SUFFIXES:
        return "not a JPEG, PNG or WebP file"
    if not any(head.startswith(magic) for magic in _SIGNATURES[suffix]) or (
            suffix == ".webp" and head[8:12] != b"WEBP"):
        return f"named {suffix} but not a {suffix.lstrip('.').upper()} file"
    return None


async def read_photo_upload(request: web.Request, limits: PhotoUploadLimits) -> PhotoUpload:
    """Every part of ``request`` read as the module docstring says; ``UploadRefused``
    otherwise (nothing of the upload is left unwiped then)."""
    upload = PhotoUpload()
    try:
        await _read_parts(request, limits, upload)
    except BaseException:
        upload.wipe()
        raise
    for photos in upload.subjects.values():
        photos.sort(key=lambda photo: photo.name)
    upload.subjects = dict(sorted(upload.subjects.items()))
    if not upload.subjects:
        upload.wipe()
        raise UploadRefused(400, "the folder holds no photo in a subject folder (one "
                                 "sub-folder per subject, JPEG, PNG or WebP photos in it)")
    return upload


async def _read_parts(request: web.Request, limits: PhotoUploadLimits,
                      upload: PhotoUpload) -> None:
    if request.content_type != "multipart/form-data":
        raise UploadRefused(400, "the photos must come as multipart/form-data (the page's "
                                 "script sends them)")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != PHOTO_FIELD:
            raise UploadRefused(400, "the upload holds a part that is not a photo file")
        name = part.filename or ""
        shown = printable(name, max_chars=200)
        if not name or len(name) > MAX_NAME_CHARS:
            raise UploadRefused(400, f"a file name is empty or longer than {MAX_NAME_CHARS} "
                                     f"characters: {shown}")
        upload.files += 1
        if upload.files > limits.max_files:
            raise UploadRefused(413, f"{shown}: the folder holds more than {limits.max_files} "
                                     "files, the limit of one upload")
        await _read_file(part, name, limits, upload)


async def _read_file(part: BodyPartReader, name: str, limits: PhotoUploadLimits,
                     upload: PhotoUpload) -> None:
    shown = printable(name, max_chars=200)
    subject, why_not = _subject_of(name)
    if subject is not None and (problem := _subject_id_problem(subject)) is not None:
        raise UploadRefused(400, f"{shown}: the subject folder's name becomes the subject id "
                                 f"and is {problem}; rename the folder")
    data = bytearray()
    try:
        await _stream(part, shown, limits, upload, data if subject is not None else None)
    except BaseException:
        wipe_buffer(data)
        raise
    if subject is None:
        if why_not != "hidden":  # .DS_Store, editor files: not photos by anyone's intent
            upload.skipped.append(f"{shown}: {why_not}")
        return
    problem = _format_problem(name, bytes(data[:_SNIFF_BYTES]))
    if problem is not None:
        wipe_buffer(data)
        upload.skipped.append(f"{shown}: {problem}")
        return
    upload.subjects.setdefault(subject, []).append(UploadedPhoto(subject, name, data))


async def _stream(part: BodyPartReader, shown: str, limits: PhotoUploadLimits,
                  upload: PhotoUpload, sink: bytearray | None) -> None:
    """Read ``part`` to its end into ``sink`` (None: read and dropped), counting its bytes
    against the limits as they arrive."""
    size = 0
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        size += len(chunk)
        upload.total_bytes += len(chunk)
        _check_sizes(shown, size, limits, upload)
        if sink is not None:
            sink += chunk


def _check_sizes(shown: str, size: int, limits: PhotoUploadLimits, upload: PhotoUpload) -> None:
    if size > limits.max_file_bytes:
        raise UploadRefused(413, f"{shown}: over {limits.max_file_bytes:,} bytes, the limit of "
                                 "one file")
    if upload.total_bytes > limits.max_total_bytes:
        raise UploadRefused(413, f"{shown}: the files up to this one are over "
                                 f"{limits.max_total_bytes:,} bytes, the limit of one upload")
