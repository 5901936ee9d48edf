"""``console.app`` served on loopback and driven like a browser: sign-in and its cookie, sign-out,
session expiry and token rotation, CSRF and cross-site refusals, throttling, server-side roles,
security headers on every response, body limits and pages free of inline script."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar, FormData, web

from actors.van.tls_certificate import create_tls_certificate, server_ssl_context
from console.app import NAVIGATION, ConsoleConfig, PageRoute, _throttled_address, shell_page
from console.security import CONTENT_SECURITY_POLICY, SECURITY_HEADERS, require_role
from console.sessions import SignInThrottle, ThrottleConfig
from console.users import Role, UserStore
from guards.config_checks import ConfigError
from tests.console.support import (
    ATTACKER_SITE,
    OPERATOR,
    SUPERVISOR,
    Client,
    FakeClock,
    console_client,
    fields_of,
    inline_code,
    make_users,
    plant_session_cookie,
    session_cookie,
    set_cookies,
    sign_in,
    signed_in,
)

HTML = {"Accept": "text/html"}


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.json_response({"bytes": len(body), "account": require_role(request,
                                                                           "operator").account})


async def _purge(request: web.Request) -> web.StreamResponse:
    del request
    return web.json_response({"purged": True})


async def _report(request: web.Request) -> web.StreamResponse:
    return shell_page(request, "Report", "<p>figures</p>", scripts=("/static/report.js",))


PAGES = (
    PageRoute("POST", "/echo", _echo),
    PageRoute("POST", "/upload", _echo, max_body_bytes=256 * 1024),
    PageRoute("POST", "/watchlist/purge", _purge, role=Role.SUPERVISOR),
    PageRoute("GET", "/watchlist", _report, role=Role.SUPERVISOR),
    PageRoute("GET", "/report", _report),
)


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    return make_users(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(users: UserStore, clock: FakeClock) -> AsyncIterator[Client]:
    async with console_client(users, clock, pages=PAGES) as client:
        yield client


def _assert_security_headers(response: ClientResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.status, response.url, name)


# -- sign-in --------------------------------------------------------------------------------


async def test_signing_in_sets_a_strict_httponly_session_cookie(client: Client) -> None:
    answer = await sign_in(client, *OPERATOR)
    assert answer.status == 303
    assert answer.headers["Location"] == "/"
    cookie = set_cookies(answer)["lfr_session"]
    assert len(cookie.value) >= 43
    assert "httponly" in cookie.attributes
    assert cookie.attributes["samesite"] == "Strict"
    assert cookie.attributes["path"] == "/"
    assert "secure" not in cookie.attributes  # plain HTTP on loopback
    assert "max-age" not in cookie.attributes  # the server decides when it ends
    shell = await client.get("/", headers=HTML)
    assert shell.status == 200
    assert "Signed in as <strong>olive</strong> (operator)" in await shell.text()


async def test_over_tls_the_session_cookie_is_secure(users: UserStore, clock: FakeClock,
                                                      tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    files = create_tls_certificate(tmp_path / "tls", "van-1")
    tls = server_ssl_context(files.certificate, files.key)
    async with console_client(users, clock, tls=tls) as client:
        form = await client.get("/signin", ssl=False)
        token = fields_of(await form.text()).inputs["csrf_token"]
        assert "secure" in set_cookies(form)["lfr_signin"].attributes
        answer = await client.post("/signin", ssl=False, allow_redirects=False,
                                   data={"name": OPERATOR[0], "password": OPERATOR[1],
                                         "csrf_token": token})
        assert answer.status == 303
        cookie = set_cookies(answer)["lfr_session"]
        assert "secure" in cookie.attributes
        assert "httponly" in cookie.attributes
        assert cookie.attributes["samesite"] == "Strict"


@pytest.mark.parametrize(("name", "password"), [
    (OPERATOR[0], "not the password"),
    ("nobody", OPERATOR[1]),
    ("dora", "dora-password-1"),  # disabled
])
async def test_a_refused_sign_in_says_the_same_whatever_was_wrong(
        client: Client, users: UserStore, name: str, password: str) -> None:
    users.add("dora", Role.OPERATOR, "dora-password-1")
    users.disable("dora")
    answer = await sign_in(client, name, password)
    assert answer.status == 401
    page = await answer.text()
    assert "The name or the password is wrong." in page
    assert password not in page
    assert "lfr_session" not in set_cookies(answer)
    assert session_cookie(client) is None


async def test_the_sign_in_form_is_accessible_markup(client: Client) -> None:
    page = await (await client.get("/signin")).text()
    assert '<html lang="en">' in page
    assert '<a class="skip-link" href="#main">' in page
    assert '<main id="main"' in page
    assert '<label for="signin-name">Name</label>' in page
    assert '<input id="signin-name" name="name" autocomplete="username"' in page
    assert '<label for="signin-password">Password</label>' in page
    assert 'type="password" autocomplete="current-password"' in page
    assert page.index("signin-name") < page.index("signin-password") < page.index("<button")


async def test_a_sign_in_without_the_forms_own_token_is_refused(client: Client) -> None:
    await client.get("/signin")  # the cookie half is there...
    answer = await client.post("/signin", data={"name": OPERATOR[0], "password": OPERATOR[1]},
                               allow_redirects=False)
    assert answer.status == 403  # ...but the form's half is not
    client.session.cookie_jar.clear()
    form = await client.get("/signin")
    token = fields_of(await form.text()).inputs["csrf_token"]
    client.session.cookie_jar.clear()  # the form's half without the cookie's
    answer = await client.post("/signin", allow_redirects=False, data={
        "name": OPERATOR[0], "password": OPERATOR[1], "csrf_token": token})
    assert answer.status == 403
    assert session_cookie(client) is None


async def test_a_sign_in_posted_from_another_site_is_refused(client: Client) -> None:
    answer = await sign_in(client, *OPERATOR, headers={"Origin": ATTACKER_SITE})
    assert answer.status == 403
    answer = await sign_in(client, *OPERATOR, headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status == 403
    assert session_cookie(client) is None
    answer = await sign_in(client, *OPERATOR,
                           headers={"Origin": str(client.make_url("")).rstrip("/"),
                                    "Sec-Fetch-Site": "same-origin"})
    assert answer.status == 303


# -- sessions -------------------------------------------------------------------------------


async def test_without_a_session_pages_go_to_signin_and_the_rest_gets_401(
        client: Client) -> None:
    page = await client.get("/", headers=HTML, allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/signin"
    for method, path in [("GET", "/"), ("POST", "/echo"), ("GET", "/report"),
                         ("GET", "/no-such-page"), ("POST", "/signout")]:
        answer = await client.request(method, path, allow_redirects=False)
        assert answer.status == 401, (method, path)
    plant_session_cookie(client, "made-up-token")
    assert (await client.get("/", allow_redirects=False)).status == 401


async def test_sign_in_rotates_the_token_and_ends_the_old_session(client: Client) -> None:
    plant_session_cookie(client, "planted-by-an-attacker")
    await signed_in(client, *OPERATOR)
    first = session_cookie(client)
    assert first not in (None, "planted-by-an-attacker")
    await signed_in(client, *SUPERVISOR)
    second = session_cookie(client)
    assert second not in (None, first)
    shell = await client.get("/", headers=HTML)
    assert "Signed in as <strong>sam</strong>" in await shell.text()
    assert first is not None
    plant_session_cookie(client, first)
    assert (await client.get("/", allow_redirects=False)).status == 401


async def test_a_session_ends_when_idle_and_at_its_absolute_limit(client: Client,
                                                                   clock: FakeClock) -> None:
    await signed_in(client, *OPERATOR)
    clock.advance(29 * 60)
    assert (await client.get("/")).status == 200
    clock.advance(30 * 60 + 1)
    assert (await client.get("/", allow_redirects=False)).status == 401

    await signed_in(client, *OPERATOR)
    for _ in range(35):  # in use every 20 minutes for 11 h 40 min
        clock.advance(20 * 60)
        assert (await client.get("/")).status == 200
    clock.advance(20 * 60)
    assert (await client.get("/", allow_redirects=False)).status == 401


async def test_a_disabled_accounts_session_ends_at_the_next_recheck(
        client: Client, users: UserStore, clock: FakeClock) -> None:
    await signed_in(client, *OPERATOR)
    users.disable(OPERATOR[0])
    clock.advance(29)
    assert (await client.get("/")).status == 200  # not re-checked yet
    clock.advance(2)
    assert (await client.get("/", allow_redirects=False)).status == 401
    assert (await sign_in(client, *OPERATOR)).status == 401


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(client: Client) -> None:
    token = await signed_in(client, *OPERATOR)
    cookie = session_cookie(client)
    refused = await client.post("/signout", allow_redirects=False)
    assert refused.status == 403
    refused = await client.post("/signout", data={"csrf_token": "wrong"},
                                allow_redirects=False)
    assert refused.status == 403
    assert (await client.get("/")).status == 200  # still signed in
    answer = await client.post("/signout", data={"csrf_token": token}, allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/signin"
    assert set_cookies(answer)["lfr_session"].value == ""
    assert cookie is not None
    plant_session_cookie(client, cookie)  # replayed: gone
    assert (await client.get("/", allow_redirects=False)).status == 401


# -- CSRF -----------------------------------------------------------------------------------


async def test_a_state_changing_request_needs_the_sessions_csrf_token(client: Client) -> None:
    token = await signed_in(client, *OPERATOR)
    body = json.dumps({"x": 1})
    json_type = {"Content-Type": "application/json"}
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert (await client.request(method, "/echo", data=body,
                                     headers=json_type)).status == 403, method
    assert (await client.post("/echo", data=body,
                              headers={**json_type, "X-CSRF-Token": "wrong"})).status == 403
    assert (await client.post("/echo", data=body,
                              headers={**json_type, "X-CSRF-Token": token + "x"})).status == 403
    other = await _other_sessions_token(client)
    assert (await client.post("/echo", data=body,
                              headers={**json_type, "X-CSRF-Token": other})).status == 403
    answer = await client.post("/echo", data=body, headers={**json_type, "X-CSRF-Token": token})
    assert answer.status == 200
    assert await answer.json() == {"bytes": len(body), "account": "olive"}
    form = await client.post("/echo", data={"csrf_token": token, "note": "ok"})
    assert form.status == 200


async def _other_sessions_token(client: Client) -> str:
    """The CSRF token of another browser's live session (this client's cookies untouched)."""
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as other:
        form = await other.get(client.make_url("/signin"))
        token = fields_of(await form.text()).inputs["csrf_token"]
        answer = await other.post(client.make_url("/signin"), data={
            "name": SUPERVISOR[0], "password": SUPERVISOR[1], "csrf_token": token})
        assert answer.status == 200  # followed to the shell
        return fields_of(await answer.text()).meta["lfr-csrf-token"]


async def test_a_request_from_another_site_is_refused_even_with_the_token(
        client: Client) -> None:
    token = await signed_in(client, *OPERATOR)
    for headers in ({"Origin": ATTACKER_SITE}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        answer = await client.post("/echo", data="{}",
                                   headers={"X-CSRF-Token": token, **headers})
        assert answer.status == 403, headers


# -- throttling -----------------------------------------------------------------------------


async def test_five_wrong_passwords_throttle_the_account_with_retry_after(
        client: Client, clock: FakeClock) -> None:
    for _ in range(5):
        assert (await sign_in(client, OPERATOR[0], "wrong password!")).status == 401
    throttled = await sign_in(client, *OPERATOR)  # the right password, refused all the same
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) == 60
    assert "Too many failed sign-ins" in await throttled.text()
    _assert_security_headers(throttled)
    assert session_cookie(client) is None
    clock.advance(61)
    assert (await sign_in(client, *OPERATOR)).status == 303


async def test_on_loopback_one_accounts_failures_lock_out_that_account_only(
        client: Client) -> None:
    # Every officer in the van signs in from loopback: the address is not counted there.
    for _ in range(5):
        assert (await sign_in(client, OPERATOR[0], "wrong password!")).status == 401
    assert (await sign_in(client, *OPERATOR)).status == 429
    assert (await sign_in(client, *SUPERVISOR)).status == 303


def test_failures_count_against_a_remote_address_but_not_against_loopback() -> None:
    assert _throttled_address("192.0.2.7") == "192.0.2.7"
    assert _throttled_address("127.0.0.1") == ""
    assert _throttled_address("::1") == ""
    assert _throttled_address(None) == "unknown"
    throttle = SignInThrottle(ThrottleConfig())
    for attempt in range(5):
        throttle.failed(f"guess-{attempt}", "192.0.2.7")
    assert throttle.retry_after("sam", "192.0.2.7") is not None  # the address is locked
    for attempt in range(5):
        throttle.failed(f"guess-{attempt}", "")
    assert throttle.retry_after("sam", "") is None  # loopback: per account only


# -- roles ----------------------------------------------------------------------------------


async def test_an_operator_is_refused_a_supervisor_route_on_the_server(client: Client) -> None:
    token = await signed_in(client, *OPERATOR)
    refused = await client.post("/watchlist/purge", headers={"X-CSRF-Token": token})
    assert refused.status == 403
    assert "supervisor" in await refused.text()
    token = await signed_in(client, *SUPERVISOR)
    allowed = await client.post("/watchlist/purge", headers={"X-CSRF-Token": token})
    assert allowed.status == 200
    assert await allowed.json() == {"purged": True}


async def test_the_navigation_shows_the_watchlist_to_supervisors_only(client: Client) -> None:
    await signed_in(client, *OPERATOR)
    operator_page = await (await client.get("/")).text()
    await signed_in(client, *SUPERVISOR)
    supervisor_page = await (await client.get("/")).text()
    for link in NAVIGATION:
        anchor = f'<a href="{link.path}"'
        assert anchor in supervisor_page
        assert (anchor in operator_page) == (link.role is Role.OPERATOR)


# -- headers, bodies, markup ----------------------------------------------------------------


async def test_every_response_carries_the_security_headers(client: Client) -> None:
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'self'; script-src 'self';")
    answers = [await client.get("/signin"),
               await client.get("/", allow_redirects=False),
               await client.get("/", headers=HTML, allow_redirects=False),
               await client.get("/static/console.css"),
               await client.get("/static/console.js"),
               await client.get("/static/missing.js"),
               await client.get("/static/"),
               await sign_in(client, OPERATOR[0], "wrong password!")]
    token = await signed_in(client, *OPERATOR)
    answers += [await client.get("/"),
                await client.get("/report"),
                await client.get("/no-such-page"),
                await client.post("/echo", data="{}"),
                await client.post("/watchlist/purge", headers={"X-CSRF-Token": token}),
                await client.post("/echo", data=b"x" * (65 * 1024),
                                  headers={"X-CSRF-Token": token}),
                await client.get("/signout")]
    assert sorted({a.status for a in answers}) == [200, 303, 401, 403, 404, 405, 413]
    for answer in answers:
        _assert_security_headers(answer)


async def test_static_files_are_served_but_never_a_listing_or_outside_the_folder(
        client: Client) -> None:
    css = await client.get("/static/console.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    assert (await client.get("/static/console.js")).content_type in ("application/javascript",
                                                                     "text/javascript")
    assert (await client.get("/static/")).status in (403, 404)
    for path in ("/static/%2e%2e/users.py", "/static/..%2fusers.py",
                 "/static/%2e%2e%2fusers.py"):
        answer = await client.get(path)
        assert answer.status in (401, 403, 404), path  # 401: outside /static/, not signed in
        assert "UserStore" not in await answer.text()


async def test_a_body_over_the_limit_is_refused_with_413(client: Client) -> None:
    token = await signed_in(client, *OPERATOR)
    headers = {"X-CSRF-Token": token}
    assert (await client.post("/echo", data=b"x" * (64 * 1024), headers=headers)).status == 200
    over = await client.post("/echo", data=b"x" * (64 * 1024 + 1), headers=headers)
    assert over.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(80):
            yield b"x" * 1024

    assert (await client.post("/echo", data=chunks(), headers=headers)).status == 413
    big = await client.post("/upload", data=b"x" * (200 * 1024), headers=headers)
    assert big.status == 200
    assert (await big.json())["bytes"] == 200 * 1024
    assert (await client.post("/upload", data=b"x" * (257 * 1024),
                              headers=headers)).status == 413
    token = await signed_in(client, *SUPERVISOR)  # a handler that never reads its body:
    unread = await client.post("/watchlist/purge", data=b"x" * (65 * 1024),
                               headers={"X-CSRF-Token": token})
    assert unread.status == 413  # refused by the announced size before it runs


async def test_no_page_holds_inline_script_or_style(client: Client) -> None:
    pages = [await (await client.get("/signin")).text(),
             await (await sign_in(client, OPERATOR[0], "wrong password!")).text()]
    await signed_in(client, *SUPERVISOR)
    pages += [await (await client.get("/")).text(), await (await client.get("/report")).text()]
    for page in pages:
        checked = inline_code(page)
        assert checked.found == [], checked.found
    shell = inline_code(pages[2])
    assert shell.scripts == ["/static/console.js"]
    assert inline_code(pages[3]).scripts == ["/static/console.js", "/static/report.js"]
    assert '<link rel="stylesheet" href="/static/console.css">' in pages[2]


async def test_the_shell_page_has_landmarks_a_skip_link_and_the_current_section(
        client: Client) -> None:
    await signed_in(client, *OPERATOR)
    page = await (await client.get("/report")).text()
    assert page.index('<a class="skip-link" href="#main">') < page.index("<header")
    assert '<nav aria-label="Console sections">' in page
    assert '<main id="main" tabindex="-1"><h1>Report</h1>' in page
    assert '<a href="/report" aria-current="page">Report</a>' in page
    assert '<a href="/alerts">Alerts</a>' in page
    head = await client.head("/report")
    assert head.status == 200
    assert head.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


async def test_untrusted_text_in_the_shell_is_escaped(users: UserStore,
                                                      clock: FakeClock) -> None:
    users.add("<b>x</b>&co", Role.OPERATOR, "markup-password-1")
    async with console_client(users, clock, config=ConsoleConfig(van_id="van<1>")) as client:
        await signed_in(client, "<b>x</b>&co", "markup-password-1")
        page = await (await client.get("/")).text()
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;co" in page
    assert "van van&lt;1&gt;" in page


# -- page routes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("POST", "/signin"), ("GET", "/signout"), ("GET", "/static/x.js"),
    ("GET", "alerts"), ("TRACE", "/alerts"),
])
def test_a_page_route_cannot_shadow_the_consoles_own(method: str, path: str) -> None:
    with pytest.raises(ConfigError, match="PageRoute"):
        PageRoute(method, path, _purge)  # type: ignore[arg-type]


def test_a_page_routes_body_limit_is_positive() -> None:
    with pytest.raises(ConfigError, match=r"PageRoute\.max_body_bytes"):
        PageRoute("POST", "/x", _purge, max_body_bytes=0)


async def test_an_operator_following_a_link_to_a_supervisor_page_gets_a_readable_page(
        client: Client) -> None:
    await signed_in(client, *OPERATOR)
    page = await client.get("/watchlist", headers={"Accept": "text/html"})
    assert page.status == 403
    text = await page.text()
    assert "<nav" in text  # the console's own page, with its navigation
    assert "needs the supervisor role" in text
    bare = await client.get("/watchlist", headers={"Accept": "application/json"})
    assert bare.status == 403
    assert "<nav" not in await bare.text()


async def test_the_icon_browsers_ask_for_is_an_empty_answer(client: Client) -> None:
    answer = await client.get("/favicon.ico")
    assert answer.status == 204


async def test_a_request_naming_another_host_is_refused_against_dns_rebinding(
        client: Client) -> None:
    answer = await client.get("/signin", headers={"Host": "evil.example:8080"})
    assert answer.status == 421
    assert (await client.get("/signin", headers={"Host": "localhost"})).status == 200


async def test_a_multipart_body_is_never_parsed_for_its_csrf_field(client: Client) -> None:
    # aiohttp would spool a large file part to disk while parsing: the token must come in
    # the header, and a multipart body with the token only in a field is refused unread.
    token = await signed_in(client, *OPERATOR)
    form = FormData()
    form.add_field("csrf_token", token)
    form.add_field("file", b"x" * 2048, filename="list.signed")
    refused = await client.post("/upload", data=form)
    assert refused.status == 403
    assert "CSRF" in await refused.text()
