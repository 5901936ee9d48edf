"""Fixtures shared by every test folder."""

from __future__ import annotations

import aioice.ice
import pytest


@pytest.fixture
def loopback_host_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE gathers host candidates on 127.0.0.1 only (aioice leaves loopback out by default):
    the in-process WebRTC tests use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])
