"""Fixtures of the runtime tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from runtime import ActorSystem, Backoff, SupervisorConfig, SystemConfig

FAST_ROOT = SupervisorConfig(backoff=Backoff(initial_s=0.001, factor=2.0, max_s=0.01))
"""A root supervisor that restarts almost at once, so tests need not wait for backoffs."""


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    """A started actor system with a fast-restarting root, stopped after the test."""
    async with ActorSystem(SystemConfig(name="test", root=FAST_ROOT, shutdown_drain_s=1.0)) as sys_:
        yield sys_
