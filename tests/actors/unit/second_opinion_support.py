"""What the two-model matcher tests share: stand-ins for both models, the gallery they match,
and a matcher running in an actor system with a sink (``two_model_matcher``).

The first model reads the person from the crop's first pixel (``matcher_support.face_of``); the
second is a mock describer (a unit test may mock) that returns a descriptor at a chosen distance
from the wanted subject's template and records what it was shown.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from actors.unit.detector import DetectorOutput, StreamEnded
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import (
    GetMatcherStatistics,
    Matcher,
    MatcherConfig,
    MatcherOutput,
    MatcherStatistics,
)
from actors.unit.second_opinion import SecondTemplates, TwoModelGallery
from runtime.ordered_window import ResultsReady
from runtime.ref import ActorRef
from runtime.system import ActorSystem
from tests.actors.support import WAIT_S, eventually, toward, unit_rows
from tests.actors.unit.matcher_support import Sink

DIM = 192
RNG = np.random.default_rng(12)
WANTED_ROW = unit_rows(RNG, 1, DIM)[0]
# First-model embeddings by person id (the crop's first pixel): the wanted person (cosine 1),
# someone just below the candidate score (0.45 < 0.60 - 0.10) and a stranger.
WANTED, BELOW_CANDIDATE, STRANGER = 0, 1, 2
FIRST = np.stack([WANTED_ROW, toward(RNG, WANTED_ROW, 0.45), toward(RNG, WANTED_ROW, 0.0)])
TEMPLATE = RNG.standard_normal(128).astype(np.float32)
TEMPLATE *= np.float32(0.6 / np.linalg.norm(TEMPLATE))


class FirstModel:
    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        row: NDArray[np.float32] = FIRST[int(face[0, 0, 0])].copy()
        return row


class SecondModel:
    """Returns a descriptor ``distance`` from the wanted template; records the boxes shown."""

    def __init__(self, distance: float) -> None:
        self.distance = distance
        self.boxes: list[tuple[float, float, float, float]] = []
        self.given: list[NDArray[np.float32]] = []

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        self.boxes.append(box)
        offset = np.zeros(128, np.float32)
        offset[0] = self.distance
        descriptor = TEMPLATE + offset
        self.given.append(descriptor)
        return descriptor


class SlowSecondModel(SecondModel):
    """Agrees (0.3, a sure look), but every look waits until the test lets it answer
    (``answer``)."""

    def __init__(self) -> None:
        super().__init__(distance=0.3)
        self.answer = threading.Event()
        self.started = threading.Event()

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        self.started.set()
        assert self.answer.wait(WAIT_S), "the test never let the look answer"
        return super().describe(pixels, box)


def two_model_gallery() -> TwoModelGallery:
    """One subject, "wanted", at 0.6 for both models."""
    second = SecondTemplates("mock-second", "0" * 64, {"wanted": 0}, TEMPLATE[None, :].copy(),
                             np.array([0.6], np.float32))
    return TwoModelGallery(["wanted"], WANTED_ROW[None, :].copy(),
                           np.array([0.6], np.float32), second)


@dataclass
class MatcherRig:
    """A running matcher, what it told its sink, and every incarnation made."""

    matcher: ActorRef[DetectorOutput | GetMatcherStatistics | ResultsReady]
    received: list[MatcherOutput]
    made: list[Matcher] = field(default_factory=list)

    async def statistics(self) -> MatcherStatistics:
        stats = await self.matcher.ask(GetMatcherStatistics(), timeout=30)
        assert isinstance(stats, MatcherStatistics)
        return stats

    async def until_decided(self, frames: int) -> MatcherStatistics:
        """Poll (asks) until ``frames`` frames are decided; the statistics then."""
        async with asyncio.timeout(WAIT_S):
            while (stats := await self.statistics()).frames != frames:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return stats

    def alerts(self) -> list[MatchAlert]:
        return [m for m in self.received if isinstance(m, MatchAlert)]

    async def end_stream(self, frames: int) -> None:
        """Tell the end of camera cam0's stream and wait until the matcher passed it on."""
        await self.matcher.tell(StreamEnded("cam0", frames=frames))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in self.received))


@asynccontextmanager
async def two_model_matcher(second: SecondModel, config: MatcherConfig | None = None,
                            ) -> AsyncIterator[MatcherRig]:
    """A matcher of ``FirstModel`` and ``second`` over ``two_model_gallery``, telling a sink."""
    received: list[MatcherOutput] = []
    made: list[Matcher] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))

        def make() -> Matcher:
            made.append(Matcher(FirstModel(), two_model_gallery(), sink, config,
                                describer=second))
            return made[-1]

        matcher = await system.spawn("matcher", make)
        yield MatcherRig(matcher, received, made)
