"""``lfr edge --self-test``: every item passes for a unit provisioned against a real van (both
real processes), and each item fails on its own, with its FAIL line and a non-zero exit, while
the items that do not depend on it still run."""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from actors.van.tls_certificate import certificate_fingerprint, format_fingerprint
from bench.node_processes import start_van
from guards.exit_codes import ExitCode
from lfr.cli import main
from lfr.config import NodeConfigError, UnitConfig, load_unit_config
from lfr.local_deployment import (
    CameraPlan,
    LocalDeployment,
    create_local_deployment,
    free_local_port,
)
from lfr.self_test import CLOCK_FLOOR, SelfTestConfig, run_self_test
from lfr.unit_models import load_unit_models
from models.model_file import ModelFile, load_model_bytes
from tests.lfr.cli_process import lfr
from tests.lfr.test_node_config import make_unit, make_van, write_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP = REPO_ROOT / "demo" / "short_hamilton_clip.mp4"
ITEMS = ["config", "keys", "models", "recognition", "camera:door", "clock", "van"]
LINE = re.compile(r"self-test (\S+): (pass|FAIL|skipped) - (.+)")


@pytest.fixture(scope="module")
def van(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    """A van (keys, TLS certificate, authority) running as its own process for the module."""
    deployment = create_local_deployment(tmp_path_factory.mktemp("self-test") / "deployment",
                                         units=1, cameras=[CameraPlan("door", CLIP)])
    with start_van(deployment.van_config):
        yield deployment


def _provision_args(van: LocalDeployment, folder: Path) -> list[str]:
    pin = format_fingerprint(certificate_fingerprint(van.root / "van" / "tls" / "tls.crt"))
    return ["provision", "--unit-id", "unit-st", "--van", van.van_url,
            "--van-pubkeys", str(van.root / "van" / "keys" / "public.keys"),
            "--authority-pubkeys", str(van.root / "authority" / "keys" / "public.keys"),
            "--van-tls-fingerprint", pin, "--out", str(folder / "etc"),
            "--state-dir", str(folder / "state"), "--camera", f"door={CLIP}"]


@pytest.fixture
def unit_toml(van: LocalDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
              ) -> Path:
    """A unit provisioned (in this process) against the running van."""
    assert main(_provision_args(van, tmp_path)) == ExitCode.OK
    capsys.readouterr()
    return tmp_path / "etc" / "unit.toml"


def _lines(out: str) -> dict[str, tuple[str, str]]:
    """Each item's outcome and detail; every line of ``out`` must be one item's."""
    found = [LINE.fullmatch(line) for line in out.splitlines()]
    assert all(found), out
    return {m.group(1): (m.group(2), m.group(3)) for m in found if m is not None}


def _self_test(capsys: pytest.CaptureFixture[str], config: Path, *,
               settings: SelfTestConfig | None = None,
               clock: Callable[[], float] = time.time) -> tuple[int, dict[str, tuple[str, str]]]:
    code = run_self_test(config, settings or SelfTestConfig(camera_timeout_s=60),
                         clock=clock)
    out = capsys.readouterr().out
    lines = _lines(out)
    assert list(lines) == ITEMS or list(lines) == [
        "config", "keys", "models", "recognition", "camera", "clock", "van"], out
    return code, lines


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def _only_failures(lines: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {item: outcome for item, (outcome, _) in lines.items() if outcome != "pass"}


# -- all pass, as a user runs it --------------------------------------------------------------


def test_every_item_passes_for_a_provisioned_unit_and_a_running_van(
        van: LocalDeployment, tmp_path: Path) -> None:
    provisioned = lfr(*_provision_args(van, tmp_path))
    assert provisioned.returncode == ExitCode.OK, provisioned.stderr
    result = lfr("edge", "--self-test", "--config", str(tmp_path / "etc" / "unit.toml"),
                 timeout_s=180)
    assert result.returncode == ExitCode.OK, (result.stdout, result.stderr[-2000:])
    lines = _lines(result.stdout)
    assert list(lines) == ITEMS
    assert _only_failures(lines) == {}
    assert "unit unit-st, 1 camera" in lines["config"][1]
    assert "mode 0600" in lines["keys"][1]
    assert "blazeface-full-range" in lines["models"][1]
    assert "mobilefacenet-192" in lines["models"][1]
    assert "one face found, embedding of 192 finite values, norm 1.0000" in (
        lines["recognition"][1])
    assert "a 640x360 frame" in lines["camera:door"][1]
    assert "pinned certificate (HTTP 405)" in lines["van"][1]
    # It changed nothing on the unit: no outbox, no audit trail.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["public.keys",
                                                                     "signing.key"]


def test_self_test_runs_alone(unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["edge", "--self-test", "--check-config", "--config", str(unit_toml)])
    assert code == ExitCode.BAD_INPUT
    assert "--self-test runs alone" in capsys.readouterr().err


# -- each item failing on its own -------------------------------------------------------------


def test_a_config_that_does_not_load_fails_and_everything_else_is_skipped(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(unit_toml, 'id = "unit-st"', 'id = "unit-st"\ncolour = "red"')
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert lines["config"][0] == "FAIL"
    assert "colour: unknown key" in lines["config"][1]
    skipped = ["keys", "models", "recognition", "camera", "clock", "van"]
    assert _only_failures(lines) == {"config": "FAIL"} | dict.fromkeys(skipped, "skipped")
    assert lines["van"][1] == "because the config did not load"


def test_the_keys_of_another_node_fail_the_keys_item_alone(
        van: LocalDeployment, unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    authority_key = van.root / "authority" / "keys" / "signing.key"
    _edit(unit_toml, f'signing_key = "{unit_toml.parent.parent / "state" / "signing.key"}"',
          f'signing_key = "{authority_key}"')
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"keys": "FAIL"}
    assert "holds the keys of authority authority, not of unit unit-st" in lines["keys"][1]


def test_a_signing_key_others_may_read_fails_the_keys_item_alone(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(unit_toml.parent.parent / "state" / "signing.key", 0o644)
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"keys": "FAIL"}
    assert "mode 0644" in lines["keys"][1]


def test_a_model_whose_sha256_differs_fails_the_models_and_skips_recognition(
        unit_toml: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    def pinned_elsewhere(model: ModelFile, path: Path | None = None) -> bytes:
        return load_model_bytes(replace(model, sha256="0" * 64), path)  # same file, other pin

    # verify_model, which every model loads through, reads the file with this function
    monkeypatch.setattr("models.interpreter.load_model_bytes", pinned_elsewhere)
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"models": "FAIL", "recognition": "skipped"}
    assert lines["models"][1].startswith("model file ")
    assert "expected 0000000000000000" in lines["models"][1]
    assert "refusing to load it" in lines["models"][1]
    assert lines["recognition"][1] == "because the models did not load"


def test_an_edge_tpu_asked_for_and_absent_fails_the_models_clearly(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = unit_toml.parent
    for name, source in (("face_detection_full_range_edgetpu.tflite",
                          "face_detection_full_range.tflite"),
                         ("MobileFaceNet_edgetpu.tflite", "MobileFaceNet.tflite")):
        (folder / name).write_bytes((REPO_ROOT / "models" / "data" / source).read_bytes())
    with unit_toml.open("a") as out:
        out.write('\n[accelerator]\nkind = "edgetpu"\n'
                  'detector_model = "face_detection_full_range_edgetpu.tflite"\n'
                  f'detector_sha256 = "{"99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"}"\n'  # noqa: E501
                  'embedder_model = "MobileFaceNet_edgetpu.tflite"\n'
                  f'embedder_sha256 = "{"d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"}"\n')  # noqa: E501
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"models": "FAIL", "recognition": "skipped"}
    assert "accelerator edgetpu" in lines["config"][1]
    assert f"config file {unit_toml}: accelerator.library: libedgetpu.so.1 cannot be loaded" in (
        lines["models"][1])


def test_a_photo_without_a_face_fails_recognition_alone(
        unit_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), (128, 128, 128)).save(blank)
    code, lines = _self_test(capsys, unit_toml,
                             settings=SelfTestConfig(camera_timeout_s=60, image=blank))
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"recognition": "FAIL"}
    assert "the detector found 0 face(s), 0 usable; exactly one expected" in (
        lines["recognition"][1])


def test_a_camera_file_that_is_no_video_fails_its_camera_alone(
        unit_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video " * 100)
    _edit(unit_toml, f'source = "{CLIP}"', f'source = "{fake}"')
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"camera:door": "FAIL"}
    assert f"camera door: cannot open {fake}" in lines["camera:door"][1]


def test_a_camera_device_that_is_missing_fails_its_camera_after_the_timeout(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(unit_toml, f'source = "{CLIP}"', 'source = "/dev/video-missing"')
    code, lines = _self_test(capsys, unit_toml, settings=SelfTestConfig(camera_timeout_s=3))
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"camera:door": "FAIL"}
    assert lines["camera:door"][1].startswith("/dev/video-missing: no frame within 3 s; last: "
                                              "cannot open /dev/video-missing")


def test_an_unreachable_van_fails_the_van_and_leaves_the_clock_unchecked(
        unit_toml: Path, capsys: pytest.CaptureFixture[str], van: LocalDeployment) -> None:
    _edit(unit_toml, van.van_url, f"https://127.0.0.1:{free_local_port()}")
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"clock": "skipped", "van": "FAIL"}
    assert "cannot reach the van at https://127.0.0.1:" in lines["van"][1]
    assert lines["clock"][1].startswith("because the van could not be reached")


def test_a_van_with_another_certificate_fails_the_van(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = unit_toml.read_text()
    pin = re.search(r'tls_fingerprint = "([0-9A-F:]+)"', text)
    assert pin is not None
    other = "00" + pin.group(1)[2:] if not pin.group(1).startswith("00") else "11" + pin.group(
        1)[2:]
    unit_toml.write_text(text.replace(pin.group(1), other))
    code, lines = _self_test(capsys, unit_toml)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"clock": "skipped", "van": "FAIL"}
    assert "not the pinned one" in lines["van"][1]


def test_a_clock_before_the_floor_fails_the_clock_alone(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _self_test(capsys, unit_toml, clock=lambda: 1_000_000_000.0)  # 2001
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"clock": "FAIL"}
    assert lines["clock"][1].startswith("the clock says 2001-09-09T01:46:40Z, before "
                                        f"{CLOCK_FLOOR:%Y-%m-%d}")


def test_a_clock_an_hour_off_the_vans_fails_the_clock_alone(
        unit_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _self_test(capsys, unit_toml, clock=lambda: time.time() + 3600)
    assert code == ExitCode.SELF_TEST_FAILED
    assert _only_failures(lines) == {"clock": "FAIL"}
    assert re.match(r"360\d s ahead of the van's clock \(at most 10 s", lines["clock"][1]), (
        lines["clock"][1])


# -- the models a config asks for (lfr.unit_models) -------------------------------------------

DETECTOR_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
EMBEDDER_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"


def _unit_config(folder: Path, accelerator: dict[str, object] | None = None) -> UnitConfig:
    """A unit config in ``folder``; with ``accelerator``, stand-in Edge TPU files (copies of
    the CPU models: there is no Edge TPU compiler here) named by that table."""
    (folder / "van").mkdir()
    make_van(folder / "van")
    data = make_unit(folder, folder / "van")
    if accelerator is not None:
        for name, source in (("face_detection_full_range_edgetpu.tflite",
                              "face_detection_full_range.tflite"),
                             ("MobileFaceNet_edgetpu.tflite", "MobileFaceNet.tflite")):
            (folder / name).write_bytes((REPO_ROOT / "models" / "data" / source).read_bytes())
        data["accelerator"] = {
            "kind": "edgetpu", "detector_model": "face_detection_full_range_edgetpu.tflite",
            "detector_sha256": DETECTOR_SHA256, "embedder_model": "MobileFaceNet_edgetpu.tflite",
            "embedder_sha256": EMBEDDER_SHA256} | accelerator
    return load_unit_config(write_config(folder / "unit.toml", data))


def test_without_an_accelerator_the_unit_runs_the_vendored_models(tmp_path: Path) -> None:
    detector, embedder = load_unit_models(_unit_config(tmp_path))
    assert (detector.model_id, embedder.model_id) == ("blazeface-full-range",
                                                      "mobilefacenet-192")
    assert (detector.model_sha256, embedder.model_sha256) == (DETECTOR_SHA256,
                                                               EMBEDDER_SHA256)


def test_a_library_that_is_no_tflite_delegate_is_refused_naming_the_key(
        tmp_path: Path) -> None:
    config = _unit_config(tmp_path, {"library": "libc.so.6"})
    with pytest.raises(NodeConfigError) as refused:
        load_unit_models(config)
    assert str(refused.value) == (
        f"config file {config.file}: accelerator.library: libc.so.6 is not a TFLite delegate "
        "library (it has no tflite_plugin_create_delegate); the Edge TPU runtime is "
        "libedgetpu.so.1")


def _pretend_the_runtime_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both library checks pass (no Edge TPU runtime is installed here), so what is behind
    them is reached."""
    monkeypatch.setattr("lfr.unit_models._check_library", lambda config, library: None)
    monkeypatch.setattr("models.interpreter._check_edgetpu_library", lambda library: None)


def test_a_compiled_model_with_another_digest_is_refused_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_the_runtime_is_installed(monkeypatch)
    config = _unit_config(tmp_path, {"detector_sha256": "ab" * 32})
    with pytest.raises(NodeConfigError) as refused:
        load_unit_models(config)
    text = str(refused.value)
    assert text.startswith(f"config file {config.file}: accelerator.detector_model: model "
                           f"file {tmp_path / 'face_detection_full_range_edgetpu.tflite'} "
                           "(blazeface-full-range-edgetpu) has sha256 99bf9494")
    assert f"expected {'ab' * 32}; refusing to load it" in text


# TFLite's half-built delegate raises again when it is collected (models/interpreter.py)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_edge_tpu_attached_is_refused_naming_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_the_runtime_is_installed(monkeypatch)
    config = _unit_config(tmp_path, {"device": "usb:0"})
    with pytest.raises(NodeConfigError) as refused:
        load_unit_models(config)
    assert str(refused.value).startswith(
        f"config file {config.file}: accelerator.device: usb:0: Edge TPU delegate from "
        "'libedgetpu.so.1' failed to load (no Edge TPU device attached?)")
    del refused  # its traceback holds the half-built delegate: collected here, in this test
    gc.collect()
