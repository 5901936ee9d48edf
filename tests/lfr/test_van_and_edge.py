"""The whole delivery path as a user runs it: ``lfr van`` and ``lfr edge`` as separate
processes on this machine, the real recognition pipeline on the shared clip, real signed
signaling, WebRTC, sealing and storage. The van must hold the clip's one alert (Lin-Manuel
Miranda) exactly once, verified and decrypted with its key, and it must be exactly what the unit
printed; and no media section can ever be negotiated with a running van.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time

import aiohttp

from actors.unit.event_body import AlertBody, decode_body
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from actors.van.signaling import (
    CONTENT_TYPE,
    OFFER_CONTEXT,
    OfferPayload,
    seal_link_key,
    sign_payload,
)
from bench.node_processes import NodeProcess, start_van
from guards.exit_codes import ExitCode
from lfr.local_deployment import LocalDeployment
from secure.envelope import open_envelope
from secure.key_files import read_node_keys, read_public_keys
from secure.node_keys import NodeRole
from tests.lfr.cli_process import lfr

EDGE_TIMEOUT_S = 240.0


def _stored_alerts(clip_deployment: LocalDeployment) -> list[AlertBody]:
    van = read_node_keys(clip_deployment.van_signing_key, clip_deployment.van_encryption_key)
    assert van.encryption is not None
    enrolment = Enrolment.open(clip_deployment.root / "van" / "state")
    with EventStore.open(clip_deployment.event_store) as store:
        events = store.by_unit("unit-1")
    bodies = [decode_body(open_envelope(event.sealed, signers=enrolment.lookup,
                                        van_key=van.encryption).body)
              for event in events if event.kind == "alert"]
    return [body for body in bodies if isinstance(body, AlertBody)]


def _deploy_clip_watchlist(clip_deployment: LocalDeployment) -> None:
    """Start a deployment on the running van and push the clip's watchlist, signed by the
    deployment's authority, as a supervisor does."""
    assert clip_deployment.watchlist is not None
    config = str(clip_deployment.van_config)
    signed = clip_deployment.root / "clip.signed"
    for args in (("van", "deployment", "start", "--id", "clip", "--threshold", "0.6",
                  "--config", config),
                 ("watchlist", "sign", str(clip_deployment.watchlist), "--key",
                  str(clip_deployment.authority_signing_key), "--version", "1",
                  "--deployment", "clip", "--not-after", "2099-01-01T00:00:00Z",
                  "--out", str(signed)),
                 ("watchlist", "push", str(signed), "--units", "all", "--config", config)):
        result = lfr(*args)
        assert result.returncode == 0, (args, result.stderr[-2000:])


def test_the_clip_alert_reaches_the_van_once_verified_decrypted_and_as_printed(
        clip_deployment: LocalDeployment) -> None:
    with start_van(clip_deployment.van_config, "--print-alerts") as van:
        _deploy_clip_watchlist(clip_deployment)
        edge = NodeProcess("unit-1", [sys.executable, "-m", "lfr", "edge", "--config",
                                      str(clip_deployment.unit_configs[0]), "--print-alerts"])
        with edge:
            code = edge.wait(EDGE_TIMEOUT_S)
            assert code == ExitCode.OK, edge.tail()
        van.wait_for(lambda line: line.startswith("{"), 30)  # the van printed the alert
        van_printed = [json.loads(line) for line in list(van.stdout) if line.startswith("{")]
        assert any("unit unit-1 connected" in line for line in van.stdout)
        assert van.stop() == ExitCode.TERMINATED
    printed = [json.loads(line) for line in list(edge.stdout) if line.startswith("{")]
    stored = _stored_alerts(clip_deployment)
    assert [body.subject_id for body in stored] == ["lin_manuel_miranda"]
    assert [alert["subject_id"] for alert in printed] == ["lin_manuel_miranda"]
    (body,), (line,) = stored, printed
    assert line["event_id"] == body.event_id
    assert line["score"] == body.score
    assert line["captured_at"] == body.captured_at
    assert body.watchlist_version == 1  # the version the van pushed matched
    assert [(alert["unit"], alert["subject"]) for alert in van_printed] == [
        ("unit-1", "lin_manuel_miranda")]
    assert not any("crop" in key for alert in van_printed for key in alert)  # metadata only
    # Both trails record it: raised and acknowledged on the unit, stored at the van; the crop
    # only as its hash.
    unit_trail = [json.loads(line) for line in (clip_deployment.root / "unit-1" / "state" /
                                                "audit.log").read_text().splitlines()]
    raised = [r["fields"] for r in unit_trail if r["kind"] == "alert_raised"]
    assert [(r["subject"], r["crop_sha256"]) for r in raised] == [
        ("lin_manuel_miranda", hashlib.sha256(body.crop_jpeg).hexdigest())]
    sent = [r["fields"]["seq"] for r in unit_trail if r["kind"] == "alert_sent"]
    assert sent == [raised[0]["seq"]]
    van_trail = [json.loads(line) for line in (clip_deployment.root / "van" / "state" /
                                               "audit.log").read_text().splitlines()]
    assert [(r["fields"]["unit"], r["fields"]["seq"]) for r in van_trail
            if r["kind"] == "alert_sent"] == [("unit-1", raised[0]["seq"])]


async def test_a_running_van_refuses_an_offer_with_an_audio_or_video_section(
        clip_deployment: LocalDeployment) -> None:
    """Signed by the enrolled unit, fresh, well formed: only the media is wrong. The van
    answers 400 media_refused and stays up for the next unit."""
    unit = read_node_keys(clip_deployment.root / "unit-1" / "keys" / "signing.key")
    van_keys = read_public_keys(clip_deployment.root / "van" / "keys" / "public.keys", NodeRole.VAN)
    assert van_keys.encryption_key is not None
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\n"
           "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n")
    nonce = secrets.token_bytes(32)
    sealed_key = seal_link_key(secrets.token_bytes(32), van_keys.encryption_key, unit.node_id,
                               nonce)
    body = sign_payload(OfferPayload(unit.node_id, int(time.time() * 1000), nonce, sdp,
                                     sealed_key), unit.signing, OFFER_CONTEXT)
    with start_van(clip_deployment.van_config) as van:
        async with aiohttp.ClientSession() as session, session.post(
                f"{clip_deployment.van_url}/units/unit-1/offer", data=body,
                headers={"Content-Type": CONTENT_TYPE}, ssl=False) as response:
            text = await response.text()
        assert response.status == 400, text
        assert text.startswith("media_refused"), text
        assert van.process.poll() is None, "the van died on a refused offer"
        van.wait_for(lambda line: "media_refused" in line, 10, stream="stderr")
        assert van.stop() == ExitCode.TERMINATED
