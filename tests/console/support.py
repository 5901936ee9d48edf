"""What the console tests share: a clock they move by hand, a console served on loopback with
its accounts, and a browser-like client that signs in as a person would (the form's token
first, then the form)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from aiohttp import ClientResponse, CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from console.app import ConsoleConfig, PageRoute, build_console_app
from console.users import Role, UserStore

OPERATOR = ("olive", "operator-password-1")
"""An operator's name and password."""
SUPERVISOR = ("sam", "supervisor-password-1")
"""A supervisor's name and password."""
ATTACKER_SITE = "https://evil.example"
"""An origin that is not the console's."""

Client = TestClient[web.Request, web.Application]


class FakeClock:
    """A monotonic clock the test moves with ``advance``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_users(state_dir: Path) -> UserStore:
    """A store in ``state_dir`` holding ``OPERATOR`` and ``SUPERVISOR``."""
    users = UserStore.open(state_dir)
    users.add(OPERATOR[0], Role.OPERATOR, OPERATOR[1])
    users.add(SUPERVISOR[0], Role.SUPERVISOR, SUPERVISOR[1])
    return users


@asynccontextmanager
async def console_client(users: UserStore, clock: FakeClock, *,
                         pages: Sequence[PageRoute] = (),
                         config: ConsoleConfig | None = None,
                         tls: ssl.SSLContext | None = None) -> AsyncIterator[Client]:
    """The console app served on 127.0.0.1 (over TLS with ``tls``) and a client keeping its
    cookies like a browser (IP-address hosts included)."""
    app = build_console_app(users, config or ConsoleConfig(), pages=pages, clock=clock)
    server = TestServer(app)
    if tls is not None:
        await server.start_server(ssl=tls)
    async with TestClient(server, cookie_jar=CookieJar(unsafe=True)) as client:
        yield client


class FormFields(HTMLParser):
    """The hidden inputs, ``<meta>`` tags and scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "input" and "name" in values:
            self.inputs[values["name"]] = values.get("value", "")
        if tag == "meta" and "name" in values:
            self.meta[values["name"]] = values.get("content", "")


def fields_of(page: str) -> FormFields:
    """``page`` parsed for its inputs and meta tags."""
    parser = FormFields()
    parser.feed(page)
    parser.close()
    return parser


async def sign_in(client: Client, name: str, password: str, *,
                  headers: dict[str, str] | None = None) -> ClientResponse:
    """Open the sign-in form, then submit it; the answer (redirects not followed)."""
    form = await client.get("/signin", headers={"Accept": "text/html"},
                            allow_redirects=False)
    token = fields_of(await form.text()).inputs.get("csrf_token", "")
    return await client.post("/signin", data={"name": name, "password": password,
                                              "csrf_token": token},
                             headers=headers or {}, allow_redirects=False)


async def signed_in(client: Client, name: str, password: str) -> str:
    """Sign in (which must succeed); the session's CSRF token from the shell page."""
    answer = await sign_in(client, name, password)
    assert answer.status == 303, await answer.text()
    return await csrf_token(client)


async def csrf_token(client: Client) -> str:
    """The CSRF token the shell page gives its scripts."""
    shell = await client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert shell.status == 200, shell.status
    return fields_of(await shell.text()).meta["lfr-csrf-token"]


def session_cookie(client: Client) -> str | None:
    """The ``lfr_session`` cookie the client holds."""
    for cookie in client.session.cookie_jar:
        if cookie.key == "lfr_session":
            return cookie.value
    return None


def plant_session_cookie(client: Client, value: str) -> None:
    """Make the client hold ``lfr_session=value`` for the console's address (as a browser
    would after a Set-Cookie from it, or an attacker planting one)."""
    client.session.cookie_jar.update_cookies({"lfr_session": value},
                                             response_url=client.make_url("/"))


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One ``Set-Cookie`` header, its attributes lower-cased."""

    name: str
    value: str
    attributes: dict[str, str]


def set_cookies(response: ClientResponse) -> dict[str, SetCookie]:
    """Every cookie ``response`` sets, by name."""
    found: dict[str, SetCookie] = {}
    for header in response.headers.getall("Set-Cookie", []):
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        attributes: dict[str, str] = {}
        for part in rest:
            key, _, attr_value = part.partition("=")
            attributes[key.lower()] = attr_value
        found[name] = SetCookie(name, value.strip('"'), attributes)
    return found


class InlineCode(HTMLParser):
    """Everything in a page the CSP would refuse to run or apply: inline ``<script>`` bodies,
    scripts without ``src`` or from another origin, ``<style>`` elements, ``style=``
    attributes, ``on...=`` handlers and ``javascript:`` URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "script":
            self._in_script = True
            src = values.get("src", "")
            self.scripts.append(src)
            if not src.startswith("/static/"):
                self.found.append(f"script src={src!r}")
        if tag == "style":
            self.found.append("<style>")
        for key, value in values.items():
            if key == "style" or key.startswith("on"):
                self.found.append(f"{tag} {key}=")
            if value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {key}=javascript:")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"inline script {data.strip()[:40]!r}")


def inline_code(page: str) -> InlineCode:
    """``page`` checked for inline code (``.found``) and its scripts (``.scripts``)."""
    parser = InlineCode()
    parser.feed(page)
    parser.close()
    return parser
