"""Fixtures of the actor tests: the shared test data and a fast-restarting actor system."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from runtime import ActorSystem, Backoff, SupervisorConfig, SystemConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
"""``../shared/data`` beside the checkout (see its README.md)."""
HAMILTON_CLIP = Path("faces") / "video" / "short_hamilton_clip.mp4"
"""640x360 H.264 at 29.97 fps, 275 frames, pts 0.85 s to 10.0 s."""

FAST_ROOT = SupervisorConfig(backoff=Backoff(initial_s=0.001, factor=2.0, max_s=0.01))
"""A root supervisor that restarts almost at once, so tests need not wait for backoffs."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared test data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found: no {SHARED_DATA} beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hamilton_clip(shared_data: Path) -> Path:
    """The short Hamilton clip; skips the test when it is absent."""
    clip = shared_data / HAMILTON_CLIP
    if not clip.is_file():
        pytest.skip(f"../shared/data not found: no {clip}")
    return clip


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    """A started actor system with a fast-restarting root, stopped after the test."""
    config = SystemConfig(name="test", root=FAST_ROOT, blocking_workers=2, shutdown_drain_s=1.0)
    async with ActorSystem(config) as sys_:
        yield sys_
