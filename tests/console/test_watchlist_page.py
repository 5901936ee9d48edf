"""The Watchlist page (``console.watchlist_page``): supervisors only (an operator gets 403 on
every route, POSTs with a valid CSRF token included), CSRF on every POST, the confirmation
steps of purge and end, starting a deployment, pushing a real signed watchlist through the
board (refusals with their reason), which unit holds which version, the subjects with links to
their photos, and escaping. The van is built by ``tests.console.test_units_page``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import FormData

from actors.watchlist_messages import HeldState
from audit.kinds import AuditKind
from console.watchlist_page import MAX_UPLOAD_BYTES, SUBJECTS_PER_PAGE, photo_url
from tests.actors.van.test_watchlist_board import (
    broken_ed25519,
    kinds,
    make_watchlist,
    payload_hash,
    poll,
    sign,
)
from tests.console.support import OPERATOR, SUPERVISOR, Client, fields_of, inline_code
from tests.console.test_units_page import ODD_UNIT, ConsoleVan, browser, console_van, page_text

HTML = {"Accept": "text/html"}


def upload(signed: bytes, *, target: str = "all", units: tuple[str, ...] = ()) -> FormData:
    """The multipart body the page's script sends."""
    form = FormData()
    form.add_field("watchlist", signed, filename="watchlist.lfrswl",
                   content_type="application/octet-stream")
    form.add_field("target", target)
    for unit in units:
        form.add_field("unit", unit)
    return form


async def push(client: Client, token: str, signed: bytes, *, status: int = 200,
               target: str = "all", units: tuple[str, ...] = ()) -> dict[str, Any]:
    answer = await client.post("/watchlist/push", data=upload(signed, target=target,
                                                              units=units),
                               headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert answer.status == status, (answer.status, await answer.text())
    result: dict[str, Any] = await answer.json()
    return result


async def post_form(client: Client, path: str, fields: dict[str, str], *,
                    status: int) -> str:
    answer = await client.post(path, data=fields, headers=HTML, allow_redirects=False)
    text = await answer.text()
    assert answer.status == status, (answer.status, text[:400])
    return text


def active(van: ConsoleVan) -> str | None:
    """The active deployment's id (a call: mypy does not narrow it from one line to the
    next, as it would the board's property)."""
    return None if van.board.deployment is None else van.board.deployment.id


async def started(van: ConsoleVan, client: Client, token: str,
                  deployment: str = "dep-1") -> None:
    await post_form(client, "/watchlist/deployment", {
        "csrf_token": token, "deployment_id": deployment, "threshold": "0.62"}, status=200)
    assert active(van) == deployment


# --- roles and CSRF ----------------------------------------------------------------------------


async def test_an_operator_gets_403_on_every_watchlist_route(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        await van.board.push(sign())
        records = kinds(van.audit.path)
        async with browser(van, OPERATOR) as (client, token):
            for path in ("/watchlist", "/watchlist/purge", "/watchlist/end"):
                answer = await client.get(path, headers=HTML, allow_redirects=False)
                assert answer.status == 403, path
            # POSTs with the operator's valid CSRF token, each one that would act.
            for path, fields in [
                    ("/watchlist/deployment", {"deployment_id": "dep-2", "threshold": "0.6"}),
                    ("/watchlist/purge", {"unit": "", "confirm": "yes"}),
                    ("/watchlist/end", {"confirm": "yes"})]:
                answer = await client.post(path, data={"csrf_token": token, **fields},
                                           allow_redirects=False)
                assert answer.status == 403, path
            answer = await client.post("/watchlist/push", data=upload(sign(version=2)),
                                       headers={"X-CSRF-Token": token})
            assert answer.status == 403
            shell = await page_text(client, "/units")
        assert van.board.deployment is not None  # nothing ended, started, purged or pushed
        assert van.board.wanted("unit-1") == 1
        assert kinds(van.audit.path) == records
    assert 'href="/watchlist"' not in shell  # and the shell hides the link from operators


async def test_every_post_needs_the_csrf_token(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            for path, fields in [
                    ("/watchlist/deployment", {"deployment_id": "dep-1", "threshold": "0.6"}),
                    ("/watchlist/purge", {"unit": "", "confirm": "yes"}),
                    ("/watchlist/end", {"confirm": "yes"})]:
                answer = await client.post(path, data=fields, allow_redirects=False)
                assert answer.status == 403, path
                answer = await client.post(path, data={"csrf_token": "x" + token, **fields},
                                           allow_redirects=False)
                assert answer.status == 403, path
            answer = await client.post("/watchlist/push", data=upload(sign()))
            assert answer.status == 403
        assert van.board.deployment is None
        assert kinds(van.audit.path) == []


# --- the deployment ----------------------------------------------------------------------------


async def test_a_supervisor_starts_a_deployment_in_the_usual_range_only(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            page = await page_text(client, "/watchlist")
            assert "No deployment is active" in page
            assert 'action="/watchlist/deployment"' in page
            for threshold, problem in [("0.30", "outside the usual range"),
                                       ("1.5", "strictly between 0 and 1"),
                                       ("nan", "strictly between 0 and 1"),
                                       ("high", "must be a number")]:
                text = await post_form(client, "/watchlist/deployment", {
                    "csrf_token": token, "deployment_id": "dep-1", "threshold": threshold},
                    status=400)
                assert problem in text, threshold
            text = await post_form(client, "/watchlist/deployment", {
                "csrf_token": token, "deployment_id": "a\nb", "threshold": "0.6"}, status=400)
            assert "deployment id" in text
            assert active(van) is None
            text = await post_form(client, "/watchlist/deployment", {
                "csrf_token": token, "deployment_id": "dep-1", "threshold": "0.62"},
                status=200)
            assert "Deployment dep-1 started with threshold 0.620" in text
            text = await post_form(client, "/watchlist/deployment", {
                "csrf_token": token, "deployment_id": "dep-2", "threshold": "0.6"}, status=409)
            assert "is active; end it first" in text
            page = await page_text(client, "/watchlist")
        deployment = van.board.deployment
        assert deployment is not None
        assert (deployment.id, deployment.threshold) == ("dep-1", 0.62)
        assert kinds(van.audit.path) == [AuditKind.DEPLOYMENT_STARTED]
    assert "<dt>Id</dt><dd>dep-1</dd>" in page
    assert "<dt>Threshold</dt><dd>0.620</dd>" in page
    assert "2027-01-15 08:00:00 UTC" in page


async def test_ending_the_deployment_takes_a_confirmation_step(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            text = await page_text(client, "/watchlist/end", status=409)
            assert "No deployment is active" in text
            await started(van, client, token)
            await push(client, token, sign())
            confirm = await page_text(client, "/watchlist/end")
            assert "End deployment <strong>dep-1</strong> now?" in confirm
            form = fields_of(confirm).inputs
            assert form["confirm"] == "yes"
            assert form["csrf_token"] == token
            assert "Yes, end the deployment" in confirm
            # The form's POST without its confirmation does nothing.
            text = await post_form(client, "/watchlist/end", {"csrf_token": token},
                                   status=400)
            assert "Confirm first" in text
            assert active(van) == "dep-1"
            text = await post_form(client, "/watchlist/end", {
                "csrf_token": token, "confirm": "yes", "deployment_id": "dep-0"}, status=409)
            assert "no longer the active one" in text
            assert active(van) == "dep-1"
            text = await post_form(client, "/watchlist/end", {**form}, status=200)
            assert "Deployment dep-1 ended" in text
            assert active(van) is None
            assert van.board.wanted("unit-1") is None
            await post_form(client, "/watchlist/end", {**form}, status=409)
        assert kinds(van.audit.path)[-1] is AuditKind.DEPLOYMENT_ENDED
        assert van.deployments.current_watchlist() is None


# --- pushes ------------------------------------------------------------------------------------


async def test_a_pushed_watchlist_is_stored_assigned_and_shown(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2", linked=["unit-1"]) as van:
        async with browser(van, SUPERVISOR) as (client, token):
            await started(van, client, token)
            first = sign()
            answer = await push(client, token, first)
            assert answer["ok"] is True
            assert answer["version"] == 1
            assert "pushed to every unit" in answer["message"]
            second = sign(version=2)
            answer = await push(client, token, second, target="named", units=("unit-1",))
            assert "pushed to unit-1" in answer["message"]
            await van.board.news_for("unit-1", poll(HeldState.HELD, "dep-1", 2, 3))
            page = await page_text(client, "/watchlist")
        assert (van.board.wanted("unit-1"), van.board.wanted("unit-2")) == (2, 1)
        assert kinds(van.audit.path).count(AuditKind.WATCHLIST_PUSHED) == 2
    for data in (first, second):
        assert f"<code>{payload_hash(data)}</code>" in page
    assert "2027-01-16 08:00:00 UTC" in page  # not after
    assert '<tr><th scope="row">unit-1</th><td>online</td><td>version 2</td>' in page
    assert "held: version 2 of dep-1, 3 subjects" in page
    assert '<tr><th scope="row">unit-2</th><td>offline</td><td>version 1</td>' in page
    assert '<form id="push-form" method="post" action="/watchlist/push">' in page
    assert "multipart" not in page  # without the script no file is sent (never spooled)


async def test_a_push_refused_by_the_board_says_why_and_changes_nothing(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            answer = await push(client, token, sign(), status=409)
            assert "no deployment is active" in answer["message"]
            await started(van, client, token)
            answer = await push(client, token, broken_ed25519(sign()), status=400)
            assert answer["reason"] == "signature_ed25519"
            assert "signature invalid" in answer["message"]
            answer = await push(client, token, sign(deployment="dep-9"), status=400)
            assert answer["reason"] == "other_deployment"
            answer = await push(client, token, sign(), target="named", units=("unit-9",),
                                status=400)
            assert "not enrolled at this van: unit-9" in answer["message"]
            answer = await push(client, token, sign(), target="named", status=400)
            assert "tick at least one unit" in answer["message"]
            answer = await push(client, token, b"", status=400)
            assert "choose a signed watchlist file" in answer["message"]
            assert van.board.wanted("unit-1") is None
            await push(client, token, sign(version=3))
            answer = await push(client, token, sign(version=2), status=400)
            assert answer["reason"] == "rollback"
        assert van.board.wanted("unit-1") == 3
        assert kinds(van.audit.path).count(AuditKind.WATCHLIST_REFUSED) == 3


async def test_a_push_needs_the_script_and_a_body_over_the_limit_is_413(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            await started(van, client, token)
            # The plain form (no script): only the file's name arrives; told why, nothing done.
            text = await post_form(client, "/watchlist/push", {
                "csrf_token": token, "watchlist": "watchlist.lfrswl", "target": "all"},
                status=400)
            assert "needs the page&#x27;s script" in text
            # A body announced over the route's limit is refused before it is read.
            answer = await client.post("/watchlist/push", data=b"x",
                                       headers={"X-CSRF-Token": token,
                                                "Content-Type": "multipart/form-data; "
                                                                "boundary=b",
                                                "Content-Length": str(MAX_UPLOAD_BYTES + 1)})
            assert answer.status == 413
        assert van.board.wanted("unit-1") is None


async def test_the_uploaded_file_is_never_spooled_to_disk(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def spooled(*_args: object) -> None:
        raise AssertionError("the upload went to aiohttp's spooled temporary file")

    monkeypatch.setattr("aiohttp.web_request.SpooledTemporaryFile", spooled)
    async with console_van(tmp_path, "unit-1") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            await started(van, client, token)
            signed = sign(make_watchlist(900, seed=1))  # over aiohttp's 1 MiB spool size
            assert len(signed) > 1024 * 1024
            await push(client, token, signed)
        assert van.board.wanted("unit-1") == 1


# --- purges ------------------------------------------------------------------------------------


async def test_a_purge_takes_a_confirmation_step(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2") as van:
        async with browser(van, SUPERVISOR) as (client, token):
            await started(van, client, token)
            await push(client, token, sign())
            page = await page_text(client, "/watchlist")
            assert '<form method="get" action="/watchlist/purge">' in page
            confirm = await page_text(client, "/watchlist/purge?unit=")
            assert "Purge every unit&#x27;s watchlist now?" in confirm
            assert "Yes, purge" in confirm
            form = fields_of(confirm).inputs
            assert (form["confirm"], form["unit"], form["csrf_token"]) == ("yes", "", token)
            one = fields_of(await page_text(client, "/watchlist/purge?unit=unit-2")).inputs
            assert one["unit"] == "unit-2"
            await page_text(client, "/watchlist/purge?unit=unit-9", status=400)
            text = await post_form(client, "/watchlist/purge", {"csrf_token": token,
                                                                "unit": ""}, status=400)
            assert "Confirm first" in text
            assert van.board.wanted("unit-1") == 1
            text = await post_form(client, "/watchlist/purge", one, status=200)
            assert "Purge ordered for unit-2" in text
            assert (van.board.wanted("unit-1"), van.board.wanted("unit-2")) == (1, None)
            text = await post_form(client, "/watchlist/purge", form, status=200)
            assert "Purge ordered for every unit" in text
        assert (van.board.wanted("unit-1"), van.board.wanted("unit-2")) == (None, None)
        assert kinds(van.audit.path).count(AuditKind.WATCHLIST_PURGED) == 2


# --- subjects and escaping ---------------------------------------------------------------------


async def test_the_subjects_are_listed_with_links_to_their_photos_and_no_embedding(
        tmp_path: Path) -> None:
    odd = '<img src=x onerror="alert(1)">'
    base = make_watchlist(SUBJECTS_PER_PAGE + 2, seed=5)
    watchlist = type(base)(model_id=base.model_id, model_sha256=base.model_sha256,
                           created_at=base.created_at, subjects=(odd, *base.subjects[1:]),
                           embeddings=base.embeddings, thresholds=base.thresholds,
                           photos=base.photos, second_model_id=base.second_model_id,
                           second_model_sha256=base.second_model_sha256,
                           second_embeddings=base.second_embeddings,
                           second_thresholds=base.second_thresholds)
    async with (console_van(tmp_path, "unit-1") as van,
                browser(van, SUPERVISOR) as (client, token)):
        await started(van, client, token)
        await push(client, token, sign(watchlist))
        first = await page_text(client, "/watchlist")
        second = await page_text(client, "/watchlist?subjects_page=2")
        again = await page_text(client, "/watchlist")  # from the cached ids
    assert first == again
    assert f"Version 1: {SUBJECTS_PER_PAGE + 2} subjects; 1 to {SUBJECTS_PER_PAGE} shown" in first
    assert odd not in first
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in first
    assert f'src="{photo_url(odd)}"' in first
    assert photo_url(odd) == ("/subjects/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E"
                              "/photo.jpg")
    assert 'src="/subjects/subject_5_1/photo.jpg"' in first
    assert "subject_5_101" not in first
    assert "<span>subject_5_101</span>" in second
    assert 'href="/watchlist?subjects_page=1#subjects"' in second
    for page in (first, second):
        assert "data:" not in page
        for row in (*watchlist.embeddings[:5], *watchlist.second_embeddings[:5]):
            assert row.tobytes().hex()[:32] not in page
            for value in row[:3]:
                assert str(np.float32(value)) not in page
                assert repr(float(value)) not in page


async def test_unit_ids_are_escaped_in_every_table_and_form(tmp_path: Path) -> None:
    async with console_van(tmp_path, ODD_UNIT) as van:
        async with browser(van, SUPERVISOR) as (client, token):
            await started(van, client, token)
            await push(client, token, sign())
            await van.board.news_for(ODD_UNIT, poll(refused_version=1,
                                                    refused_reason="<b>bad</b>"))
            page = await page_text(client, "/watchlist")
            confirm = await page_text(client, "/watchlist/purge?unit=%3Cscript%3Ealert(1)")
            answer = await push(client, token, sign(version=2), target="named",
                                units=(ODD_UNIT,))
        assert van.board.wanted(ODD_UNIT) == 2
    escaped = "&lt;script&gt;alert(1)"
    assert "<script>alert(1)" not in page + confirm
    assert f'<th scope="row">{escaped}</th>' in page
    assert f'<option value="{escaped}">{escaped}</option>' in page
    assert f'name="unit" value="{escaped}"' in page
    assert "version 1: &lt;b&gt;bad&lt;/b&gt;" in page
    assert f"Purge the watchlist of unit {escaped} now?" in confirm
    assert answer["message"].endswith(f"pushed to {ODD_UNIT}. Reload the page to follow the "
                                      "units taking it.")


@pytest.mark.parametrize("path", ["/watchlist", "/watchlist/purge", "/watchlist/end"])
async def test_the_pages_carry_no_inline_code(tmp_path: Path, path: str) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        async with browser(van, SUPERVISOR) as (client, _):
            page = await page_text(client, path)
    found = inline_code(page)
    assert found.found == []
    if path == "/watchlist":
        assert found.scripts == ["/static/console.js", "/static/watchlist.js"]

