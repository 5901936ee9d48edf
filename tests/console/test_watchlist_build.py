"""The Watchlist page's build section (``console.watchlist_build_page``, ``photo_upload``,
``watchlist_build_job``) on a van of real parts (``tests.console.test_units_page.console_van``)
with the real face models: a folder of photos uploaded as the page's script sends it (memory
only, limits while streaming, each refusal naming the file and the limit), the build's progress
and result (subjects used, photos skipped with their reasons), one build at a time, signing on
the van (refused without the key, with another authority's key, with a version not above the
pushed one, with a bad time), the push with reference photos, the download for signing
elsewhere and the signed file's way back, operators refused on every route, and the trail."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import FormData
from PIL import Image

from actors.signed_watchlist import sign_watchlist
from actors.unit.watchlist import decode_watchlist
from audit.kinds import AuditKind
from console import units_page, watchlist_page
from console.photo_upload import PhotoUpload, PhotoUploadLimits, UploadedPhoto
from console.watchlist_build_job import (
    BuildState,
    BuiltWatchlist,
    PhotoModels,
    WatchlistBuilder,
    load_photo_models,
)
from lfr.watchlist_build import build_watchlist
from secure.node_keys import NodeKeys
from tests.actors.van.test_watchlist_board import (
    AUTHORITY,
    NOW,
    OTHER_AUTHORITY,
    payload_hash,
    read_audit,
    sign,
)
from tests.console.support import (
    OPERATOR,
    SUPERVISOR,
    Client,
    FakeClock,
    console_client,
    signed_in,
)
from tests.console.test_units_page import ConsoleVan, console_van, page_text
from tests.lfr.conftest import REPO_ROOT

PHOTOS = REPO_ROOT / "demo" / "watchlist_photos"
"""Four subjects, seven photos (the repository's own copy of the sample photos)."""
GROUP = REPO_ROOT.parent / "shared" / "data" / "faces" / "photos" / "groups" / "kit_and_rose.jpg"
"""Two people in one photo (test data beside the repository)."""
HTML = {"Accept": "text/html"}
NOT_AFTER = "2027-02-01T00:00:00Z"
"""After the tests' clock (``NOW``, 2027-01-15 08:00 UTC)."""
WAIT_S = 120.0
"""Longest a build may take here (loading the models on a busy shared machine); never
asserted."""

_MODELS: list[PhotoModels] = []


def shared_models() -> PhotoModels:
    """The real models, loaded once for this module (they are read-only once loaded)."""
    if not _MODELS:
        _MODELS.append(load_photo_models())
    return _MODELS[0]


def folder_files(root: Path = PHOTOS, top: str = "photos") -> list[tuple[str, bytes]]:
    """(path inside the picked folder, bytes) of every file under ``root``, as the browser
    names them (``top/subject/photo``)."""
    return [(f"{top}/{path.relative_to(root).as_posix()}", path.read_bytes())
            for path in sorted(root.rglob("*")) if path.is_file()]


def noise_jpeg() -> bytes:
    """A real JPEG with no face in it."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 40)).save(out, format="JPEG")
    return out.getvalue()


def photo_form(files: Iterable[tuple[str, bytes]]) -> FormData:
    """The multipart body the page's script sends: one ``photo`` part per file, named by its
    path (unquoted, as browsers send it)."""
    form = FormData(quote_fields=False)
    for name, data in files:
        form.add_field("photo", data, filename=name, content_type="application/octet-stream")
    return form


@asynccontextmanager
async def build_console(van: ConsoleVan, account: tuple[str, str], *,
                        builder: WatchlistBuilder | None = None,
                        limits: PhotoUploadLimits | None = None,
                        signing: NodeKeys | None = None,
                        ) -> AsyncIterator[tuple[Client, str, WatchlistBuilder]]:
    """The console with the Units and Watchlist pages and a builder (the real models unless
    given another, which the caller stops), signed in as ``account``; ``signing``: the
    authority's key on the van."""
    sources = dataclasses.replace(van.sources, authority_signing=signing)
    made = builder or WatchlistBuilder(sources.blocking, sources.audit, models=shared_models)
    pages = [*units_page.routes(sources, clock=van.clock),
             *watchlist_page.routes(sources, clock=van.clock, builder=made, limits=limits)]
    try:
        async with console_client(van.users, FakeClock(), pages=pages) as client:
            yield client, await signed_in(client, *account), made
    finally:
        if builder is None:
            await made.stop()


async def upload(client: Client, token: str, files: Iterable[tuple[str, bytes]], *,
                 status: int = 200) -> str:
    answer = await client.post("/watchlist/build", data=photo_form(files),
                               headers={"X-CSRF-Token": token, "Accept": "application/json"})
    body: dict[str, Any] = await answer.json()
    assert answer.status == status, (answer.status, body)
    assert body["ok"] is (status == 200)
    return str(body["message"])


async def progress(client: Client) -> dict[str, Any]:
    answer = await client.get("/watchlist/build/progress")
    assert answer.status == 200
    data: dict[str, Any] = await answer.json()
    return data


async def finished(client: Client) -> dict[str, Any]:
    """The progress once the build ended (polled as the page does; bounded)."""
    async with asyncio.timeout(WAIT_S):
        while (now := await progress(client))["state"] not in ("built", "failed"):
            assert now["done"] <= now["total"]
            await asyncio.sleep(0.05)
    return now


async def post_form(client: Client, path: str, token: str, fields: dict[str, str] | None = None,
                    *, status: int) -> str:
    answer = await client.post(path, data={"csrf_token": token, **(fields or {})},
                               headers=HTML, allow_redirects=False)
    text = await answer.text()
    assert answer.status == status, (answer.status, text[:600])
    return text


async def trail(van: ConsoleVan, wanted: AuditKind, count: int = 1) -> list[dict[str, Any]]:
    """The trail's records as (kind, fields) once ``count`` records of ``wanted`` are in it
    (the console's records reach it through the audit writer, on this loop: every check
    yields to it; bounded wait)."""
    async with asyncio.timeout(10.0):
        while sum(r.kind is wanted for r in read_audit(van.audit.path)) < count:  # noqa: ASYNC110 - a file, not an event
            await asyncio.sleep(0.02)
    return [{"kind": record.kind, **record.fields} for record in read_audit(van.audit.path)]


def of_kind(records: list[dict[str, Any]], kind: AuditKind) -> list[dict[str, Any]]:
    return [record for record in records if record["kind"] is kind]


def current(builder: WatchlistBuilder) -> BuiltWatchlist | None:
    """The builder's finished build."""
    return builder.result


async def built(van: ConsoleVan, client: Client, token: str) -> dict[str, Any]:
    """Start deployment dep-1 and build from the sample photos; the finished progress."""
    await van.board.start_deployment("dep-1", 0.6)
    await upload(client, token, folder_files())
    return await finished(client)


# --- roles and CSRF ----------------------------------------------------------------------------


async def test_an_operator_gets_403_on_every_build_route(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        builder = WatchlistBuilder(van.sources.blocking, van.sources.audit, models=shared_models)
        async with build_console(van, SUPERVISOR, builder=builder) as (client, token, _):
            await upload(client, token, folder_files())  # a build to act on
            await finished(client)
        async with build_console(van, OPERATOR, builder=builder) as (client, token, _):
            answer = await client.post("/watchlist/build", data=photo_form(folder_files()),
                                       headers={"X-CSRF-Token": token})
            assert answer.status == 403
            assert (await client.get("/watchlist/build/progress")).status == 403
            for path, fields in [("/watchlist/build/sign", {"version": "1",
                                                            "not_after": NOT_AFTER}),
                                 ("/watchlist/build/push", {}),
                                 ("/watchlist/build/download", {}),
                                 ("/watchlist/build/discard", {})]:
                await post_form(client, path, token, fields, status=403)
        assert builder.progress().state is BuildState.BUILT  # nothing discarded or pushed
        assert van.board.wanted("unit-1") is None
        await builder.stop()


async def test_the_upload_needs_the_csrf_header_and_the_pages_script(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            answer = await client.post("/watchlist/build", data=photo_form(folder_files()))
            assert answer.status == 403  # multipart: the token must come in the header
            answer = await client.post("/watchlist/build", data={"csrf_token": token,
                                                                 "photo": "alex_1.png"})
            assert answer.status == 400
            assert "needs the page's script" in (await answer.json())["message"]
            assert builder.progress().state is BuildState.IDLE


async def test_without_a_deployment_nothing_is_built(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            message = await upload(client, token, folder_files(), status=409)
            assert "No deployment is active" in message
            page = await page_text(client, "/watchlist")
        assert builder.progress().state is BuildState.IDLE
    assert 'id="build-form"' not in page


# --- the upload's limits -----------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "files", "named", "limit_text"), [
    (PhotoUploadLimits(max_files=3), folder_files(), "photos/kit_harington/kit_2.jpeg",
     "more than 3 files, the limit of one upload"),
    (PhotoUploadLimits(max_file_bytes=100_000, max_total_bytes=10_000_000),
     [("photos/a/small.jpg", noise_jpeg()), ("photos/a/big.jpg", b"\xff\xd8\xff" * 40_000)],
     "photos/a/big.jpg", "over 100,000 bytes, the limit of one file"),
    (PhotoUploadLimits(max_file_bytes=100_000, max_total_bytes=150_000),
     [("photos/a/1.jpg", b"\xff\xd8\xff" * 30_000), ("photos/b/2.jpg", b"\xff\xd8\xff" * 30_000)],
     "photos/b/2.jpg", "over 150,000 bytes, the limit of one upload"),
])
async def test_an_upload_over_a_limit_is_refused_naming_the_file_and_the_limit(
        tmp_path: Path, limits: PhotoUploadLimits, files: list[tuple[str, bytes]], named: str,
        limit_text: str) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with build_console(van, SUPERVISOR, limits=limits) as (client, token, builder):
            message = await upload(client, token, files, status=413)
            assert named in message
            assert limit_text in message
            assert builder.progress().state is BuildState.FAILED
            assert builder.result is None
            # Refused, it left the builder free: the next upload within the limits is taken
            # (and fails to build: a wall has no face).
            await upload(client, token, [("photos/a/wall.jpg", noise_jpeg())])
            done = await finished(client)
            assert done["state"] == "failed"
            assert "no subject has a usable photo" in done["message"]
            records = await trail(van, AuditKind.INPUT_REFUSED, count=2)
            refused = of_kind(records, AuditKind.INPUT_REFUSED)
    assert [(r["source"], r["operator"]) for r in refused] == [("photo_upload", "sam"),
                                                                ("photo_folder", "sam")]
    assert named in refused[0]["reason"]


async def test_a_body_announcing_more_than_the_limits_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    limits = PhotoUploadLimits(max_files=2, max_file_bytes=1000, max_total_bytes=2000)
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with build_console(van, SUPERVISOR, limits=limits) as (client, token, _):
            answer = await client.post("/watchlist/build", data=b"x" * (limits.body_bytes + 1),
                                       headers={"X-CSRF-Token": token,
                                                "Content-Type": "multipart/form-data; "
                                                                "boundary=b"})
            assert answer.status == 413


async def test_a_subject_folder_that_cannot_be_an_id_refuses_the_upload(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            message = await upload(client, token, [("photos/" + "x" * 300 + "/a.jpg",
                                                    noise_jpeg())], status=400)
            assert "longer than 255 characters" in message
            message = await upload(client, token, [("photos/a\tb/a.jpg", noise_jpeg())],
                                   status=400)
            assert "not printable" in message
            assert "\t" not in message
            message = await upload(client, token, [("photos/notes.txt", b"hello")],
                                   status=400)
            assert "no photo in a subject folder" in message
            assert builder.result is None


# --- the build ---------------------------------------------------------------------------------


async def test_a_folder_is_built_with_real_progress_and_its_skipped_photos_named(
        tmp_path: Path) -> None:
    files = [*folder_files(),
             ("photos/rose_leslie/.DS_Store", b"\0\0\0\1Bud1"),  # hidden: passed over
             ("photos/README.txt", b"photos of the deployment"),
             ("photos/rose_leslie/notes.txt", b"not a photo"),
             ("photos/rose_leslie/fake.png", b"GIF89a not a png at all"),
             ("photos/rose_leslie/deeper/r.jpg", noise_jpeg()),
             ("photos/nobody/empty_wall.jpg", noise_jpeg())]
    if GROUP.is_file():
        files.append(("photos/nobody/group.jpg", GROUP.read_bytes()))
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            message = await upload(client, token, files)
            photos = 8 + GROUP.is_file()  # kept for enrolment: 7 samples, the wall (and group)
            assert f"{photos} photos of 5 subjects received" in message
            done = await finished(client)
            assert (done["state"], done["done"], done["total"]) == ("built", photos, photos)
            assert done["started_by"] == "sam"
            assert f"Done: {photos} of {photos} photos" in done["text"]
            page = await page_text(client, "/watchlist")
            result = builder.result
            assert result is not None
            assert result.used == {"alex_lacamoire": 2, "kit_harington": 2,
                                   "lin_manuel_miranda": 1, "rose_leslie": 2}
            assert set(result.photos) == set(result.used)
            for jpeg in result.photos.values():
                assert jpeg.startswith(b"\xff\xd8\xff")
            skipped = "\n".join(result.skipped)
        records = await trail(van, AuditKind.WATCHLIST_BUILT)
    for reason in ["photos/README.txt: not in a subject folder",
                   "photos/rose_leslie/notes.txt: not a JPEG, PNG or WebP file",
                   "photos/rose_leslie/fake.png: named .png but not a PNG file",
                   "photos/rose_leslie/deeper/r.jpg: in a folder inside a subject folder",
                   "photos/nobody/empty_wall.jpg: no face found",
                   "nobody: no usable photo; subject left out"]:
        assert reason in skipped
    if GROUP.is_file():
        assert "photos/nobody/group.jpg: 2 usable faces" in skipped
    assert ".DS_Store" not in skipped
    assert '<progress id="build-progress"' in page
    assert f'max="{photos}" value="{photos}"' in page
    assert '<label for="build-progress">Build progress</label>' in page
    assert '<th scope="row">lin_manuel_miranda</th><td>1</td>' in page
    assert "nobody: no usable photo; subject left out" in page
    assert "Download the unsigned watchlist" in page  # no key on this van
    built_record = of_kind(records, AuditKind.WATCHLIST_BUILT)[0]
    assert {k: built_record[k] for k in ("deployment", "subjects", "photos_used",
                                         "operator")} == {
        "deployment": "dep-1", "subjects": 4, "photos_used": 7, "operator": "sam"}


async def test_the_console_builds_the_same_watchlist_as_lfr_watchlist_build(
        tmp_path: Path) -> None:
    """One enrolment loop: the same photos, uploaded or on disk, give the same list."""
    models = shared_models()
    on_disk, report = build_watchlist(PHOTOS, models.faces, progress=False,
                                      second_model=models.second)
    async with console_van(tmp_path, "unit-1") as van, \
            build_console(van, SUPERVISOR) as (client, token, builder):
        assert (await built(van, client, token))["state"] == "built"
        result = builder.result
        assert result is not None
        uploaded = result.watchlist
        assert (uploaded.subjects, uploaded.photos) == (on_disk.subjects, on_disk.photos)
        assert result.used == report.used
        assert np.array_equal(uploaded.embeddings, on_disk.embeddings)
        assert np.array_equal(uploaded.second_embeddings, on_disk.second_embeddings)
        assert np.array_equal(uploaded.thresholds, on_disk.thresholds)
        assert np.array_equal(uploaded.second_thresholds, on_disk.second_thresholds)


async def test_one_build_at_a_time_and_the_photos_are_wiped_when_it_ends(
        tmp_path: Path) -> None:
    gate = threading.Event()

    def slow_models() -> PhotoModels:
        assert gate.wait(WAIT_S)  # holds the build in "loading" until the test lets it go
        return shared_models()

    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        builder = WatchlistBuilder(van.sources.blocking, van.sources.audit, models=slow_models)
        async with build_console(van, SUPERVISOR, builder=builder) as (client, token, _):
            await upload(client, token, folder_files())
            assert (await progress(client))["state"] == "loading"
            message = await upload(client, token, folder_files(), status=409)
            assert "started by sam is loading" in message
            gate.set()
            assert (await finished(client))["state"] == "built"
            # The builder itself: the photos it was given are overwritten when it ends.
            photos = PhotoUpload()
            for name, data in folder_files():
                subject = name.split("/")[1]
                photos.subjects.setdefault(subject, []).append(
                    UploadedPhoto(subject, name, bytearray(data)))
            held = [photo.data for each in photos.subjects.values() for photo in each]
            builder.reserve("sam", "dep-1")
            assert builder.result is None  # the finished build it replaces is wiped
            builder.start(photos)
            assert (await finished(client))["state"] == "built"
        await builder.stop()
    assert len(held) == 7
    assert all(not any(data) for data in held)


# --- signing and pushing -----------------------------------------------------------------------


async def test_without_the_key_on_the_van_signing_is_refused(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            await built(van, client, token)
            text = await post_form(client, "/watchlist/build/sign", token,
                                   {"version": "1", "not_after": NOT_AFTER}, status=409)
            assert "signing key is not on this van" in text
            text = await post_form(client, "/watchlist/build/push", token, status=409)
            assert "Sign the built watchlist first" in text
            assert builder.result is not None
            assert builder.result.signed is None
        assert van.board.wanted("unit-1") is None


async def test_a_version_not_above_the_pushed_one_or_a_bad_time_is_refused(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR, signing=AUTHORITY) as (client, token, builder):
            await built(van, client, token)
            await van.board.push(sign(version=3))
            page = await page_text(client, "/watchlist")
            assert 'name="version" type="number" min="4"' in page
            for version, not_after, problem in [
                    ("3", NOT_AFTER, "Version 3 is not above version 3"),
                    ("2", NOT_AFTER, "Version 2 is not above version 3"),
                    ("four", NOT_AFTER, "is not a whole number"),
                    ("0", NOT_AFTER, "must be from 1 to"),
                    ("4", "2027-02-01T00:00:00", "has no timezone"),
                    ("4", "2027-01-01T00:00:00Z", "has already passed"),
                    ("4", "soon", "not an ISO 8601 time")]:
                text = await post_form(client, "/watchlist/build/sign", token,
                                       {"version": version, "not_after": not_after}, status=400)
                assert problem in text, (version, not_after, text[:600])
            assert builder.result is not None
            assert builder.result.signed is None
        assert of_kind([{"kind": r.kind} for r in read_audit(van.audit.path)],
                       AuditKind.WATCHLIST_SIGNED) == []


async def test_a_list_signed_with_another_authoritys_key_is_refused_at_the_push(
        tmp_path: Path) -> None:
    # The van checks the key at start (tests/console/test_van_signing_key.py); should another
    # key reach the page, the board's own check still refuses what it signed.
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR, signing=OTHER_AUTHORITY) as (client, token,
                                                                               builder):
            await built(van, client, token)
            await post_form(client, "/watchlist/build/sign", token,
                            {"version": "1", "not_after": NOT_AFTER}, status=303)
            text = await post_form(client, "/watchlist/build/push", token, status=400)
            assert "other_authority" in text
            assert builder.result is not None  # still there to discard
        assert van.board.wanted("unit-1") is None
        refused = of_kind(await trail(van, AuditKind.WATCHLIST_SIGNED),
                          AuditKind.WATCHLIST_REFUSED)
    assert refused[0]["operator"] == "console sam"


async def test_a_supervisor_signs_and_pushes_the_built_list_with_its_photos(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2") as van:
        async with build_console(van, SUPERVISOR, signing=AUTHORITY) as (client, token,
                                                                         builder):
            await built(van, client, token)
            result = builder.result
            assert result is not None
            embeddings = result.watchlist.embeddings
            await post_form(client, "/watchlist/build/sign", token,
                            {"version": "1", "not_after": NOT_AFTER}, status=303)
            page = await page_text(client, "/watchlist")
            assert "Signed as version 1" in page
            assert "Push version 1 to every unit, with 4 reference photos" in page
            text = await post_form(client, "/watchlist/build/push", token, status=200)
            assert ("Version 1 of deployment dep-1 (4 subjects, 4 reference photos) pushed to "
                    "every unit") in text
            assert builder.result is None
            assert not embeddings.any()  # the opened copy was wiped once pushed
            page = await page_text(client, "/watchlist")
        assert van.board.wanted("unit-1") == van.board.wanted("unit-2") == 1
        photo = van.deployments.reference_photo("dep-1", "lin_manuel_miranda")
        assert photo is not None
        assert photo.startswith(b"\xff\xd8\xff")
        records = await trail(van, AuditKind.WATCHLIST_SIGNED)
    assert '<th scope="row">1</th><td>4</td>' in page  # the Signed watchlists table
    signed = of_kind(records, AuditKind.WATCHLIST_SIGNED)[0]
    assert (signed["deployment"], signed["version"], signed["operator"]) == ("dep-1", 1, "sam")
    pushed = of_kind(records, AuditKind.WATCHLIST_PUSHED)[0]
    assert (pushed["version"], pushed["operator"]) == (1, "console sam")
    assert pushed["payload_sha256"] == signed["payload_sha256"]
    assert of_kind(records, AuditKind.REFERENCE_PHOTOS_STORED)[0]["count"] == 4


async def test_without_the_key_the_list_is_downloaded_signed_elsewhere_and_pushed_back(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR) as (client, token, builder):
            await built(van, client, token)
            page = await page_text(client, "/watchlist")
            assert ("lfr watchlist sign watchlist-dep-1.lfrw --key signing.key --version 1 "
                    "--deployment dep-1") in page
            answer = await client.post("/watchlist/build/download",
                                       data={"csrf_token": token})
            assert answer.status == 200
            assert answer.headers["Content-Disposition"] == (
                'attachment; filename="watchlist-dep-1.lfrw"')
            assert answer.headers["Cache-Control"] == "no-store"
            watchlist = decode_watchlist(await answer.read(), "download")
            assert sorted(watchlist.subjects) == ["alex_lacamoire", "kit_harington",
                                                  "lin_manuel_miranda", "rose_leslie"]
            signed = sign_watchlist(watchlist, authority=AUTHORITY, deployment_id="dep-1",
                                    version=1, not_after=NOW + 86_400, now=NOW)
            form = FormData()
            form.add_field("watchlist", signed, filename="signed.lfrsw")
            form.add_field("target", "all")
            answer = await client.post("/watchlist/push", data=form,
                                       headers={"X-CSRF-Token": token,
                                                "Accept": "application/json"})
            body = await answer.json()
            assert answer.status == 200, body
            assert "4 reference photos built on the van were stored with it" in body["message"]
            assert builder.result is None
        assert van.board.wanted("unit-1") == 1
        assert van.deployments.reference_photo("dep-1", "rose_leslie") is not None
        records = await trail(van, AuditKind.WATCHLIST_EXPORTED)
    exported = of_kind(records, AuditKind.WATCHLIST_EXPORTED)[0]
    assert exported["operator"] == "sam"
    assert exported["payload_sha256"] == payload_hash(signed)


async def test_a_discarded_build_is_wiped_and_audited(tmp_path: Path) -> None:
    async with (console_van(tmp_path, "unit-1") as van,
                build_console(van, SUPERVISOR) as (client, token, builder)):
        await built(van, client, token)
        result = builder.result
        assert result is not None
        await post_form(client, "/watchlist/build/discard", token, status=303)
        assert builder.result is None
        assert not result.watchlist.embeddings.any()
        assert result.photos == {}
        assert (await progress(client))["state"] == "idle"
        text = await post_form(client, "/watchlist/build/download", token, status=409)
        assert "No built watchlist is waiting" in text
        # A new upload replaces a finished build: wiped and recorded the same way.
        await upload(client, token, folder_files())
        assert (await finished(client))["state"] == "built"
        second = current(builder)  # (a call: mypy narrowed the attribute to None above)
        assert second is not None
        await upload(client, token, folder_files())
        assert not second.watchlist.embeddings.any()
        await finished(client)
        records = await trail(van, AuditKind.WATCHLIST_DISCARDED, count=2)
        discarded = of_kind(records, AuditKind.WATCHLIST_DISCARDED)
    assert [(d["operator"], d["signed_version"]) for d in discarded] == [("sam", 0), ("sam", 0)]


async def test_a_list_built_for_a_deployment_that_ended_is_wiped(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with build_console(van, SUPERVISOR, signing=AUTHORITY) as (client, token,
                                                                         builder):
            await built(van, client, token)
            result = builder.result
            assert result is not None
            await van.board.end_deployment()  # lfr van deployment end, beside the console
            await van.board.start_deployment("dep-2", 0.6)
            text = await post_form(client, "/watchlist/build/sign", token,
                                   {"version": "1", "not_after": NOT_AFTER}, status=409)
            assert "No built watchlist is waiting" in text
            assert builder.result is None
            assert not result.watchlist.embeddings.any()
            assert "Built:" not in await page_text(client, "/watchlist")
        assert van.board.wanted("unit-1") is None
