"""The Watchlist page's build section (supervisors only): upload a folder of photos, follow the
build's progress, then sign the list on the van (when the authority's key is on it) and push it
with its reference photos, or download it unsigned for ``lfr watchlist sign`` (issue 10,
"Watchlist": build from a folder of photos with a progress bar, sign).

Routes, every one ``Role.SUPERVISOR`` (``PageRoute.role``: an operator gets 403 on each, a
valid CSRF token or not), each acting only while a deployment is active and for the build made
for it:

- ``POST /watchlist/build``: the folder, multipart with the CSRF token in ``X-CSRF-Token``
  (``console.photo_upload``: memory only, limits while streaming, only photos), starts the
  build (``console.watchlist_build_job``: one at a time per van; a second one is 409);
  answers JSON ``{ok, message}``;
- ``GET /watchlist/build/progress``: JSON ``{state, done, total, started_by, deployment,
  message}``, what the page's progress bar polls (``/static/watchlist_build.js``);
- ``POST /watchlist/build/sign`` (form: ``version``, ``not_after``): signs the built list with
  ``ConsoleSources.authority_signing`` for the active deployment; the version must be above
  every version pushed in it, ``not_after`` an ISO 8601 time with a timezone, in the future
  (``lfr.watchlist_sign.parse_time``); without the key 409;
- ``POST /watchlist/build/push`` (form): the signed list's reference photos to the board
  (``WatchlistBoard.add_photos``, first, as ``lfr watchlist push --photos`` does), then the
  list to every unit (``WatchlistBoard.push``, which verifies it as for any push);
- ``POST /watchlist/build/download`` (form): the unsigned watchlist file
  (``lfr watchlist build``'s format) as an attachment, with the ``lfr watchlist sign`` command
  shown on the page; the signed file comes back through the page's "Push a signed watchlist"
  form, and when its payload is the built list's, the built reference photos are stored with
  it (``after_push``);
- ``POST /watchlist/build/discard`` (form): the built list is wiped unused.

Every action is audited with the supervisor's name: the build (``watchlist_built`` or
``input_refused``), an upload refused (``input_refused``, source ``photo_upload``), signing
(``watchlist_signed``), the download (``watchlist_exported``), discarding a built list or
replacing it by a new upload (``watchlist_discarded``); the push by the board
(``reference_photos_stored``, ``watchlist_pushed`` or ``watchlist_refused``). Actions that
change the board share the Watchlist page's lock (one console action at a time).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from typing import Final

from aiohttp import web

from actors.signed_watchlist import (
    MAX_VERSION,
    WatchlistRefused,
    read_signed_watchlist,
    sign_watchlist,
)
from actors.van.deployment_store import DeploymentError
from actors.van.watchlist_board import ALL_UNITS, PushResult
from audit.kinds import AuditKind
from console.app import PageRoute, csrf_field, outcome_page
from console.photo_upload import PhotoUploadLimits, UploadRefused, read_photo_upload
from console.security import CSRF_HEADER, current_session
from console.sources import ConsoleSources
from console.users import Role
from console.watchlist_build_job import BuilderBusy, BuildState, BuiltWatchlist, WatchlistBuilder
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.watchlist_sign import TIME_EXAMPLE, parse_time, utc
from secure.memory_wipe import wipe_buffer

log = logging.getLogger("lfr.console")

UPLOAD_WAIT_S: Final = 600.0
"""Longest a folder may take to arrive (512 MiB over a slow loopback client); then 408."""
STORE_WAIT_S: Final = 30.0
"""Longest the page waits for the deployment store; then 503."""
ACTION_QUEUE_WAIT_S: Final = 30.0
"""Longest an action waits for the console action before it; then 503."""
SKIPPED_SHOWN: Final = 200
"""Skipped photos listed on the page (the count is always whole)."""
_SAFE_FILE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")


class BuildPage:
    """The build section's handlers and HTML (module docstring)."""

    def __init__(self, sources: ConsoleSources, builder: WatchlistBuilder,
                 actions: asyncio.Lock, *, limits: PhotoUploadLimits,
                 clock: Callable[[], float]) -> None:
        self._sources = sources
        self._builder = builder
        self._actions = actions  # the Watchlist page's: one console action at a time
        self._limits = limits
        self._clock = clock

    def routes(self) -> list[PageRoute]:
        """The section's routes, every one for supervisors only."""
        supervisor = Role.SUPERVISOR
        return [
            PageRoute("POST", "/watchlist/build", self.upload, role=supervisor,
                      max_body_bytes=self._limits.body_bytes),
            PageRoute("GET", "/watchlist/build/progress", self.progress, role=supervisor),
            PageRoute("POST", "/watchlist/build/sign", self.sign, role=supervisor),
            PageRoute("POST", "/watchlist/build/push", self.push, role=supervisor),
            PageRoute("POST", "/watchlist/build/download", self.download, role=supervisor),
            PageRoute("POST", "/watchlist/build/discard", self.discard, role=supervisor),
        ]

    # -- the section ----------------------------------------------------------------------

    def drop_stale(self) -> None:
        """Wipe a built list whose deployment is no longer the active one (it ended, here or
        by ``lfr van deployment end``): it can never be pushed. Housekeeping, not an action
        of anyone's: logged, not audited."""
        result = self._builder.result
        deployment = self._sources.board.deployment
        if result is not None and (deployment is None or deployment.id != result.deployment_id):
            self._builder.discard()
            log.info("console: the watchlist built for deployment %s was wiped: the "
                     "deployment is no longer active", printable(result.deployment_id))

    async def section_html(self, request: web.Request) -> str:
        """The section shown on /watchlist while a deployment is active."""
        self.drop_stale()
        progress = self._builder.progress()
        limits = self._limits
        form = (
            '<h2 id="build">Build a watchlist from photos</h2>'
            "<p>Choose the folder that holds one sub-folder per subject, named by the subject's "
            "id, with that person's photos in it (JPEG, PNG or WebP; each must show one face). "
            f"At most {limits.max_files:,} files, {_mib(limits.max_file_bytes)} per file and "
            f"{_mib(limits.max_total_bytes)} in all. The photos stay in the van's memory and are "
            "wiped once enrolled.</p>"
            # Not enctype="multipart/form-data": without the script only the names would be
            # sent (the photos must not be spooled to disk).
            '<form id="build-form" method="post" action="/watchlist/build" '
            f'data-max-files="{limits.max_files}" data-max-file-bytes="{limits.max_file_bytes}" '
            f'data-max-total-bytes="{limits.max_total_bytes}">{csrf_field(request)}'
            '<label for="build-folder">Folder of photos</label>'
            '<input id="build-folder" name="photo" type="file" webkitdirectory multiple '
            'required>'
            '<button type="submit">Upload and build</button>'
            '<p id="build-result" role="status" aria-live="polite"></p></form>')
        value = progress.done if progress.total else 0
        text = _progress_text(progress.state, progress.done, progress.total,
                              progress.started_by, progress.message)
        bar = (
            f'<div id="build-status" data-state="{progress.state.value}">'
            '<label for="build-progress">Build progress</label>'
            f'<progress id="build-progress" max="{max(progress.total, 1)}" value="{value}" '
            'aria-describedby="build-progress-text"></progress>'
            '<p id="build-progress-text" role="status" aria-live="polite">'
            f"{html.escape(text)}</p></div>")
        result = self._builder.result
        if result is None:
            return form + bar
        return form + bar + _result_html(result) + await self._next_step_html(request, result)

    async def _next_step_html(self, request: web.Request, result: BuiltWatchlist) -> str:
        if result.signed is not None:
            return (
                f"<h3>Signed as version {result.signed_version}</h3>"
                '<form method="post" action="/watchlist/build/push">'
                f"{csrf_field(request)}"
                f'<button type="submit">Push version {result.signed_version} to every unit, '
                f"with {len(result.photos):,} reference photos</button></form>"
                + _discard_form(request))
        highest = await self._highest_version(result.deployment_id)
        if self._sources.authority_signing is not None:
            authority = self._sources.authority_signing.node_id
            above = (f"The version must be above {highest}, the highest pushed in this "
                     "deployment." if highest else "No version has been pushed in this "
                     "deployment yet.")
            return (
                "<h3>Sign it</h3>"
                f"<p>The key of watchlist authority {html.escape(authority)} is on this van. "
                f"{above}</p>"
                '<form id="sign-form" method="post" action="/watchlist/build/sign">'
                f"{csrf_field(request)}"
                '<label for="sign-version">Version</label>'
                f'<input id="sign-version" name="version" type="number" min="{highest + 1}" '
                f'step="1" value="{highest + 1}" required>'
                f'<label for="sign-not-after">Valid until (ISO 8601 with a timezone, e.g. '
                f"{html.escape(TIME_EXAMPLE)})</label>"
                '<input id="sign-not-after" name="not_after" required autocomplete="off">'
                '<button type="submit">Sign the watchlist</button></form>'
                + _discard_form(request))
        name = _file_name(result.deployment_id)
        command = (f"lfr watchlist sign {name} --key signing.key --version {highest + 1} "
                   f"--deployment {result.deployment_id} --not-after 2026-12-01T18:00Z "
                   f"--out {name.removesuffix('.lfrw')}-v{highest + 1}.lfrsw")
        return (
            "<h3>Have it signed</h3>"
            "<p>The authority's signing key is not on this van. Download the unsigned "
            "watchlist, sign it where the key is, then push the signed file with the form "
            "above (\"Push a signed watchlist\"): the reference photos built here are stored "
            "with it. The file holds biometric templates: keep it where the key is and delete "
            "it once signed.</p>"
            '<form method="post" action="/watchlist/build/download">'
            f"{csrf_field(request)}"
            '<button type="submit">Download the unsigned watchlist</button></form>'
            f"<p>Then, where the authority's key is:</p><pre><code>{html.escape(command)}"
            "</code></pre>" + _discard_form(request))

    async def _highest_version(self, deployment_id: str) -> int:
        deployments = self._sources.deployments
        try:
            async with asyncio.timeout(STORE_WAIT_S):
                facts = await self._sources.blocking.run(
                    lambda: deployments.watchlist_facts(deployment_id, limit=1))
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the deployment store did not answer in "
                                                  "time; try again\n",
                                             headers={"Retry-After": "5"}) from None
        return facts[0].version if facts else 0

    # -- upload and progress --------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/build: JSON ``{ok, message}``."""
        account = current_session(request).account
        if request.content_type != "multipart/form-data" or CSRF_HEADER not in request.headers:
            return _answer(400, "Uploading photos needs the page's script (it sends them "
                                "straight to the van's memory): turn JavaScript on for the "
                                "console, or use lfr watchlist build.")
        deployment = self._sources.board.deployment
        if deployment is None:
            return _answer(409, "No deployment is active: start one first.")
        replaced = self._builder.result
        try:
            self._builder.reserve(account, deployment.id)  # wipes a finished build
        except BuilderBusy as exc:
            return _answer(409, str(exc))
        if replaced is not None:
            self._record_discarded(replaced, account)
        try:
            async with asyncio.timeout(UPLOAD_WAIT_S):
                upload = await read_photo_upload(request, self._limits)
        except (UploadRefused, TimeoutError) as exc:
            status, text = ((exc.status, exc.text) if isinstance(exc, UploadRefused)
                            else (408, "the upload took too long; try again"))
            self._builder.release(text)
            self._sources.audit.record(AuditKind.INPUT_REFUSED, source="photo_upload",
                                       reason=printable(text, max_chars=400), operator=account)
            log.info("console: a photo upload by %s was refused: %s", printable(account), text)
            return _answer(status, f"Refused: {text}")
        except BaseException:
            self._builder.release("the upload ended early")
            raise
        self._builder.start(upload)
        log.info("console: %s uploaded %d photos of %d subjects to build a watchlist",
                 printable(account), upload.photos, len(upload.subjects))
        return web.json_response({
            "ok": True, "message": f"{upload.photos:,} photos of {len(upload.subjects):,} "
                                   "subjects received; building..."})

    async def progress(self, request: web.Request) -> web.StreamResponse:
        """GET /watchlist/build/progress: the builder's counts as JSON."""
        del request  # the same for every supervisor: the van has one build
        now = self._builder.progress()
        return web.json_response({
            "state": now.state.value, "done": now.done, "total": now.total,
            "started_by": now.started_by, "deployment": now.deployment_id,
            "message": now.message,
            "text": _progress_text(now.state, now.done, now.total, now.started_by,
                                   now.message)})

    # -- sign, push, download, discard ----------------------------------------------------

    def _usable_result(self, request: web.Request,
                       title: str) -> BuiltWatchlist | web.Response:
        """The built list, if it belongs to the active deployment; else a problem page."""
        self.drop_stale()
        result = self._builder.result
        if result is None:
            return _problem(request, title, "No built watchlist is waiting: upload a folder "
                                            "of photos first (a list built for a deployment "
                                            "that ended is wiped).", 409)
        return result

    async def sign(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/build/sign (``version``, ``not_after``)."""
        title = "Watchlist not signed"
        account = current_session(request).account
        form = await request.post()
        authority = self._sources.authority_signing
        if authority is None:
            return _problem(request, title, "The authority's signing key is not on this van "
                            "([authority] signing_key in van.toml): download the watchlist "
                            "and sign it where the key is.", 409)
        result = self._usable_result(request, title)
        if isinstance(result, web.Response):
            return result
        version_text, not_after_text = form.get("version"), form.get("not_after")
        if not isinstance(version_text, str) or not isinstance(not_after_text, str):
            return _problem(request, title, "Give the version and the time it is valid until.",
                            400)
        highest = await self._highest_version(result.deployment_id)
        try:
            version = _version(version_text, highest)
            not_after = parse_time(not_after_text.strip(), "valid until")
            now = self._clock()
            signed = await self._sources.blocking.run(lambda: sign_watchlist(
                result.watchlist, authority=authority, deployment_id=result.deployment_id,
                version=version, not_after=not_after, now=now))
        except UserInputError as exc:
            return _problem(request, title, str(exc), 400)
        if self._builder.result is not result:  # discarded or replaced meanwhile
            wipe_buffer(signed)
            return _problem(request, title, "The built watchlist was discarded meanwhile.",
                            409)
        manifest = read_signed_watchlist(signed).manifest
        if result.signed is not None:
            wipe_buffer(result.signed)
        result.signed, result.signed_version = bytearray(signed), version
        self._sources.audit.record(
            AuditKind.WATCHLIST_SIGNED, deployment=result.deployment_id, version=version,
            subjects=len(result.used), model=manifest.model_id,
            payload_sha256=manifest.payload_sha256.hex(), not_before=utc(manifest.not_before),
            not_after=utc(manifest.not_after),
            signer=manifest.authority_key_id.hex(), operator=account)
        log.info("console: %s signed watchlist version %d of deployment %s",
                 printable(account), version, printable(result.deployment_id))
        raise web.HTTPSeeOther("/watchlist#build")

    async def push(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/build/push: the reference photos, then the signed list, to every
        unit."""
        title = "Watchlist not pushed"
        account = current_session(request).account
        result = self._usable_result(request, title)
        if isinstance(result, web.Response):
            return result
        if result.signed is None:
            return _problem(request, title, "Sign the built watchlist first.", 409)
        operator = f"console {account}"
        board = self._sources.board
        await self._acting()
        signed = b""
        try:
            stored = await board.add_photos(result.deployment_id, sorted(result.photos.items()),
                                            operator=operator)
            signed = bytes(result.signed)  # the board keeps bytes; this copy is wiped below
            pushed = await board.push(signed, ALL_UNITS, operator=operator)
        except WatchlistRefused as exc:
            return _problem(request, title, str(exc), 400)
        except UserInputError as exc:
            return _problem(request, title, str(exc),
                            409 if isinstance(exc, DeploymentError) else 400)
        finally:
            self._actions.release()
            wipe_buffer(signed)
        if self._builder.result is result:
            self._builder.discard()  # pushed: the van keeps it sealed; the opened copy goes
        log.info("console: %s pushed the watchlist built on the van, version %d of deployment "
                 "%s (%d subjects, %d reference photos)", printable(account), pushed.version,
                 printable(pushed.deployment_id), pushed.subjects, stored)
        return _done(request, "Watchlist pushed",
                     f"Version {pushed.version} of deployment {pushed.deployment_id} "
                     f"({pushed.subjects:,} subjects, {stored:,} reference photos) pushed to "
                     "every unit: each takes it at its next poll.")

    async def after_push(self, pushed: PushResult, account: str) -> str:
        """After a signed file was pushed through the page's push form: when its payload is
        the built list's, store the built reference photos with it and let the build go.
        Returns a sentence for the answer ("" when nothing was done)."""
        result = self._builder.result
        if (result is None or result.payload_sha256 != pushed.payload_sha256
                or result.deployment_id != pushed.deployment_id):
            return ""
        try:
            stored = await self._sources.board.add_photos(
                pushed.deployment_id, sorted(result.photos.items()),
                operator=f"console {account}")
        except UserInputError as exc:  # the deployment ended meanwhile, a photo refused
            return f" The reference photos built on the van were not stored: {exc}"
        if self._builder.result is result:
            self._builder.discard()
        return f" {stored:,} reference photos built on the van were stored with it."

    async def download(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/build/download: the unsigned watchlist file, audited."""
        account = current_session(request).account
        result = self._usable_result(request, "No watchlist to download")
        if isinstance(result, web.Response):
            return result
        data = await self._sources.blocking.run(result.unsigned_file)
        self._sources.audit.record(AuditKind.WATCHLIST_EXPORTED,
                                   deployment=result.deployment_id, subjects=len(result.used),
                                   payload_sha256=result.payload_sha256, operator=account)
        log.info("console: %s downloaded the unsigned watchlist built on the van",
                 printable(account))
        return web.Response(body=data, content_type="application/octet-stream", headers={
            "Content-Disposition":
                f'attachment; filename="{_file_name(result.deployment_id)}"'})

    async def discard(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/build/discard: the built list is wiped."""
        account = current_session(request).account
        result = self._builder.result
        if result is not None:
            self._record_discarded(result, account)
        self._builder.discard()
        raise web.HTTPSeeOther("/watchlist#build")

    def _record_discarded(self, result: BuiltWatchlist, account: str) -> None:
        self._sources.audit.record(
            AuditKind.WATCHLIST_DISCARDED, deployment=result.deployment_id,
            subjects=len(result.used), payload_sha256=result.payload_sha256,
            signed_version=result.signed_version, operator=account)

    async def _acting(self) -> None:
        try:
            async with asyncio.timeout(ACTION_QUEUE_WAIT_S):
                await self._actions.acquire()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="another watchlist action is still running; "
                                                  "try again\n",
                                             headers={"Retry-After": "5"}) from None


def _version(text: str, highest: int) -> int:
    try:
        version = int(text.strip(), 10)
    except ValueError:
        raise UserInputError(f"The version {printable(text, max_chars=40)} is not a whole "
                             "number.") from None
    if not 1 <= version <= MAX_VERSION:
        raise UserInputError(f"The version must be from 1 to {MAX_VERSION}.")
    if version <= highest:
        raise UserInputError(f"Version {version} is not above version {highest}, the highest "
                             "pushed in this deployment: units take only a higher one.")
    return version


def _progress_text(state: BuildState, done: int, total: int, by: str, message: str) -> str:
    who = f" (started by {by})" if by else ""
    if state is BuildState.IDLE:
        return "No build yet."
    if state is BuildState.RECEIVING:
        return f"Receiving the photos{who}..."
    if state is BuildState.LOADING:
        return f"Loading the face models{who}; {total:,} photos to enrol..."
    if state is BuildState.BUILDING:
        return f"Enrolled {done:,} of {total:,} photos{who}..."
    if state is BuildState.BUILT:
        return f"Done: {done:,} of {total:,} photos{who}."
    return f"The build failed{who}: {message}"


def _result_html(result: BuiltWatchlist) -> str:
    rows = "".join(f'<tr><th scope="row">{html.escape(subject)}</th><td>{count:,}</td>'
                   f"<td>{'yes' if subject in result.photos else 'no'}</td></tr>"
                   for subject, count in result.used.items())
    skipped = "".join(f"<li>{html.escape(line)}</li>"
                      for line in result.skipped[:SKIPPED_SHOWN])
    more = len(result.skipped) - SKIPPED_SHOWN
    return (
        f"<h3>Built: {len(result.used):,} subjects</h3>"
        f"<p>By {html.escape(result.built_by)} for deployment "
        f"{html.escape(result.deployment_id)}; payload sha256 "
        f"<code>{html.escape(result.payload_sha256)}</code>.</p>"
        '<table class="built-subjects"><caption>Subjects used</caption><thead><tr>'
        '<th scope="col">Subject</th><th scope="col">Photos used</th>'
        '<th scope="col">Reference photo</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f"<h3>Skipped: {len(result.skipped):,}</h3>"
        + (f'<ul class="skipped">{skipped}</ul>' if skipped else "<p>Nothing was skipped.</p>")
        + (f"<p>... and {more:,} more.</p>" if more > 0 else ""))


def _discard_form(request: web.Request) -> str:
    return ('<form method="post" action="/watchlist/build/discard">'
            f"{csrf_field(request)}"
            '<button type="submit">Discard the built watchlist</button></form>')


def _file_name(deployment_id: str) -> str:
    return f"watchlist-{_SAFE_FILE_NAME.sub('_', deployment_id)}.lfrw"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"ok": status == 200, "message": message}, status=status)


def _problem(request: web.Request, title: str, text: str, status: int) -> web.Response:
    return outcome_page(request, title, text, back="/watchlist#build", back_label="the watchlist",
                        status=status)


def _done(request: web.Request, title: str, text: str) -> web.Response:
    return outcome_page(request, title, text, back="/watchlist", back_label="the watchlist")

