"""``lfr.config``: a valid van.toml and unit.toml load; every kind of refusal names the key
path and the file; arbitrary TOML-ish text raises nothing but ``NodeConfigError``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.van.tls_certificate import create_tls_certificate, format_fingerprint
from lfr.config import (
    MAX_CONFIG_BYTES,
    NodeConfigError,
    load_unit_config,
    load_van_config,
)
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole

Config = dict[str, Any]


def toml_text(data: Config) -> str:
    """``data`` as TOML: plain keys first, then tables, then arrays of tables (one level)."""
    plain = [f"{k} = {_value(v)}" for k, v in data.items() if not _is_table(v)]
    lines = [*plain]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"[{key}]", *(f"{k} = {_value(v)}" for k, v in value.items())]
        elif _is_table(value):
            for item in value:
                lines += [f"[[{key}]]", *(f"{k} = {_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


def _is_table(value: object) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value)
                                       and all(isinstance(v, dict) for v in value))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def make_authority(folder: Path) -> Path:
    """An authority's keys in ``folder``/authority; its public keys file."""
    if not (folder / "authority" / "public.keys").exists():
        write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "authority"),
                        folder / "authority")
    return folder / "authority" / "public.keys"


def make_van(folder: Path, van_id: str = "van-1") -> Config:
    """Keys, TLS files and a state folder for a van in ``folder``; its config as a dict."""
    write_node_keys(NodeKeys.generate(NodeRole.VAN, van_id), folder / "keys")
    (folder / "tls").mkdir()
    create_tls_certificate(folder / "tls", van_id)
    (folder / "state").mkdir()
    make_authority(folder)
    return {"id": van_id, "state_dir": "state",
            "keys": {"signing": "keys/signing.key", "encryption": "keys/encryption.key"},
            "tls": {"certificate": "tls/tls.crt", "key": "tls/tls.key"},
            "authority": {"public_keys": "authority/public.keys"}}


def make_unit(folder: Path, van_folder: Path, unit_id: str = "unit-1") -> Config:
    """A unit's keys in ``folder``, its config (a dict) naming the van made in ``van_folder``."""
    write_node_keys(NodeKeys.generate(NodeRole.UNIT, unit_id), folder / "keys")
    (folder / "clip.mp4").write_bytes(b"not decoded at load")
    (folder / "pin").mkdir()
    fingerprint = create_tls_certificate(folder / "pin", "van-1").fingerprint
    (folder / "pin" / "tls.key").unlink()
    return {"id": unit_id, "signing_key": "keys/signing.key", "outbox": "outbox.sqlite",
            "authority": {"public_keys": str(make_authority(van_folder))},
            "van": {"url": "https://127.0.0.1:8443",
                    "public_keys": str(van_folder / "keys" / "public.keys"),
                    "tls_fingerprint": format_fingerprint(fingerprint)},
            "cameras": [{"id": "cam0", "source": "clip.mp4", "paced": True},
                        {"id": "door", "source": "rtsp://10.0.0.5/stream"}]}


def write_config(path: Path, data: Config) -> Path:
    path.write_text(toml_text(data), encoding="utf-8")
    return path


@pytest.fixture
def van_folder(tmp_path: Path) -> tuple[Path, Config]:
    folder = tmp_path / "van"
    folder.mkdir()
    return folder, make_van(folder)


@pytest.fixture
def unit_folder(tmp_path: Path, van_folder: tuple[Path, Config]) -> tuple[Path, Config]:
    folder = tmp_path / "unit"
    folder.mkdir()
    return folder, make_unit(folder, van_folder[0])


# -- what loads -----------------------------------------------------------------------------


def test_a_valid_van_config_loads_with_paths_from_its_folder_and_loopback_defaults(
        van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    config = load_van_config(write_config(folder / "van.toml", data))
    assert config.van_id == "van-1"
    assert config.state_dir == folder / "state"
    assert config.signing_key == folder / "keys" / "signing.key"
    assert config.encryption_key == folder / "keys" / "encryption.key"
    assert (config.tls_certificate, config.tls_key) == (folder / "tls" / "tls.crt",
                                                        folder / "tls" / "tls.key")
    assert (config.signaling.host, config.signaling.port) == ("127.0.0.1", 8443)
    assert (config.console.host, config.console.port) == ("127.0.0.1", 8080)
    assert config.event_store.parent == config.state_dir


def test_the_van_may_listen_for_units_on_the_network(van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    data |= {"signaling": {"host": "0.0.0.0", "port": 9443},
             "console": {"host": "::1", "port": 8081}}
    config = load_van_config(write_config(folder / "van.toml", data))
    assert (config.signaling.host, config.signaling.port) == ("0.0.0.0", 9443)
    assert (config.console.host, config.console.port) == ("::1", 8081)


def test_the_van_may_be_given_stun_and_turn_servers(van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    assert load_van_config(write_config(folder / "van.toml", data)).ice_servers == ()
    data["ice_servers"] = [{"urls": ["turn:turn.example.org:3478"], "username": "van",
                            "credential": "s3cret"}]
    config = load_van_config(write_config(folder / "van.toml", data))
    (server,) = config.ice_servers
    assert (server.urls, server.username) == (("turn:turn.example.org:3478",), "van")
    assert "s3cret" not in repr(config)
    assert server.to_aiortc().credential == "s3cret"


def test_a_valid_unit_config_loads(unit_folder: tuple[Path, Config],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder, data = unit_folder
    data["ice_servers"] = [{"urls": ["stun:stun.example.org:3478"]},
                           {"urls": ["turns:turn.example.org"], "username": "u",
                            "credential": "secret-pass"}]
    path = write_config(folder / "unit.toml", data)
    monkeypatch.chdir("/")  # relative paths come from the file's folder, not the working one
    config = load_unit_config(os.path.relpath(path, "/"))
    assert config.unit_id == "unit-1"
    assert config.signing_key == folder / "keys" / "signing.key"
    assert config.outbox == folder / "outbox.sqlite"
    assert config.van_url == "https://127.0.0.1:8443"
    assert len(config.van_tls_fingerprint) == 32
    assert [(c.camera_id, c.source, c.paced) for c in config.cameras] == [
        ("cam0", str(folder / "clip.mp4"), True), ("door", "rtsp://10.0.0.5/stream", False)]
    assert config.authority_public_keys.name == "public.keys"
    assert config.audit == folder / "audit.log"  # beside the outbox by default
    assert config.health_interval_s == 5.0  # the default
    assert config.ice_servers[1].username == "u"
    assert "secret-pass" not in repr(config)
    assert config.van_tls_fingerprint.hex() not in repr(config)


def test_a_fingerprint_without_colons_and_in_lower_case_is_the_same_pin(
        unit_folder: tuple[Path, Config]) -> None:
    folder, data = unit_folder
    pin = data["van"]["tls_fingerprint"]
    data["van"]["tls_fingerprint"] = pin.replace(":", "").lower()
    config = load_unit_config(write_config(folder / "unit.toml", data))
    assert config.van_tls_fingerprint == bytes.fromhex(pin.replace(":", ""))


@pytest.mark.parametrize("interval_s", [1, 2.5, 300])
def test_the_health_interval_may_be_a_whole_or_a_fractional_number_of_seconds(
        unit_folder: tuple[Path, Config], interval_s: float) -> None:
    folder, data = unit_folder
    data["health"] = {"interval_s": interval_s}
    config = load_unit_config(write_config(folder / "unit.toml", data))
    assert config.health_interval_s == interval_s
    assert type(config.health_interval_s) is float


DETECTOR_SHA256 = "ab" * 32
EMBEDDER_SHA256 = "CD" * 32  # upper case is taken, and kept lower-case


def _edgetpu_table(folder: Path) -> Config:
    """Two stand-in compiled model files in ``folder`` and the [accelerator] table naming them
    (their digests are checked when the models load, not here)."""
    (folder / "face_detection_full_range_edgetpu.tflite").write_bytes(b"detector")
    (folder / "MobileFaceNet_edgetpu.tflite").write_bytes(b"embedder")
    return {"kind": "edgetpu",
            "detector_model": "face_detection_full_range_edgetpu.tflite",
            "detector_sha256": DETECTOR_SHA256,
            "embedder_model": "MobileFaceNet_edgetpu.tflite",
            "embedder_sha256": EMBEDDER_SHA256}


def test_without_an_accelerator_table_or_with_kind_cpu_the_unit_runs_on_the_cpu(
        unit_folder: tuple[Path, Config]) -> None:
    folder, data = unit_folder
    assert load_unit_config(write_config(folder / "unit.toml", data)).accelerator is None
    data["accelerator"] = {"kind": "cpu"}
    assert load_unit_config(write_config(folder / "unit.toml", data)).accelerator is None


def test_an_edge_tpu_accelerator_names_its_compiled_models_library_and_device(
        unit_folder: tuple[Path, Config]) -> None:
    folder, data = unit_folder
    data["accelerator"] = _edgetpu_table(folder)
    config = load_unit_config(write_config(folder / "unit.toml", data))
    tpu = config.accelerator
    assert tpu is not None
    assert tpu.detector.file == folder / "face_detection_full_range_edgetpu.tflite"
    assert tpu.detector.sha256 == DETECTOR_SHA256
    assert tpu.embedder.file == folder / "MobileFaceNet_edgetpu.tflite"
    assert tpu.embedder.sha256 == EMBEDDER_SHA256.lower()
    assert (tpu.library, tpu.device) == ("libedgetpu.so.1", None)  # the defaults
    data["accelerator"] |= {"library": "/usr/lib/libedgetpu.so.1", "device": "usb:1"}
    tpu = load_unit_config(write_config(folder / "unit.toml", data)).accelerator
    assert tpu is not None
    assert (tpu.library, tpu.device) == ("/usr/lib/libedgetpu.so.1", "usb:1")


# -- what is refused ------------------------------------------------------------------------

Change = Callable[[Config, Path], None]


def _set(path: str, value: object) -> Change:
    """A change setting ``path`` ("a.b" or "cameras.1.source") to ``value``."""
    def change(data: Config, _folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(last) if last.isdigit() else last] = value
    return change


def _drop(path: str) -> Change:
    def change(data: Config, _folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]
    return change


def _edgetpu(**changes: object) -> Change:
    """The [accelerator] table of ``_edgetpu_table`` with ``changes`` (None: key removed)."""
    def change(data: Config, folder: Path) -> None:
        table = _edgetpu_table(folder) | changes
        data["accelerator"] = {k: v for k, v in table.items() if v is not None}
    return change


def _make_dir(name: str) -> Change:
    def change(_data: Config, folder: Path) -> None:
        (folder / name).mkdir()
    return change


VAN_REFUSALS: dict[str, tuple[Change, str, str]] = {
    "unknown key": (_set("colour", "red"), "colour", "unknown key"),
    "unknown nested key": (_set("signaling.hots", "127.0.0.1"), "signaling.hots",
                           "unknown key"),
    "wrong type": (_set("id", 5), "id", "must be a string, got an integer"),
    "bool for int": (_set("signaling.port", True), "signaling.port", "must be an integer"),
    "table expected": (_set("keys", "keys/"), "keys", "must be a table"),
    "missing key": (_drop("state_dir"), "state_dir", "missing"),
    "missing table": (_drop("tls"), "tls", "missing"),
    "no authority": (_drop("authority"), "authority", "missing"),
    "authority keys of a van": (_set("authority.public_keys", "keys/public.keys"),
                                "authority.public_keys", "role is van, expected authority"),
    "bad node id": (_set("id", "*"), "id", "printable characters"),
    "control character": (_set("id", "van\x1b[2J"), "id", "control characters"),
    "port out of range": (_set("signaling.port", 70000), "signaling.port", "1-65535"),
    "host name": (_set("signaling.host", "van.example.org"), "signaling.host",
                  "does not appear to be an IPv4 or IPv6 address"),
    "console off loopback": (_set("console.host", "0.0.0.0"), "console.host",
                             "loopback only"),
    "missing key file": (_set("keys.signing", "keys/nope.key"), "keys.signing",
                         "no such file"),
    "folder for a file": (_set("tls.certificate", "tls"), "tls.certificate", "is not a file"),
    "file for a folder": (_set("state_dir", "keys/signing.key"), "state_dir",
                          "is not a folder"),
    "missing state folder": (_set("state_dir", "gone/state"), "state_dir", "no such file"),
    "ice url scheme": (_set("ice_servers", [{"urls": ["https://turn"]}]),
                       "ice_servers[0].urls[0]", "stun:"),
    "ice unknown key": (_set("ice_servers", [{"urls": ["turn:t"], "pass": "x"}]),
                        "ice_servers[0].pass", "unknown key"),
}


@pytest.mark.parametrize("case", VAN_REFUSALS)
def test_a_bad_van_config_is_refused_naming_the_key_and_the_file(
        case: str, van_folder: tuple[Path, Config]) -> None:
    change, key, problem = VAN_REFUSALS[case]
    folder, data = van_folder
    change(data, folder)
    path = write_config(folder / "van.toml", data)
    with pytest.raises(NodeConfigError) as refused:
        load_van_config(path)
    assert f"config file {path}: {key}: " in str(refused.value)
    assert problem in str(refused.value)


UNIT_REFUSALS: dict[str, tuple[Change, str, str]] = {
    "empty camera source": (_set("cameras.1.source", ""), "cameras[1].source", "empty"),
    "empty camera id": (_set("cameras.0.id", ""), "cameras[0].id", "empty"),
    "unknown camera key": (_set("cameras.0.pace", True), "cameras[0].pace", "unknown key"),
    "camera paced not a bool": (_set("cameras.0.paced", "yes"), "cameras[0].paced",
                                "must be true or false"),
    "camera id too long": (_set("cameras.0.id", "c" * 129), "cameras[0].id",
                           "must be 1-128 characters"),
    "camera id only spaces": (_set("cameras.0.id", "  "), "cameras[0].id", "not only spaces"),
    "camera id twice": (_set("cameras.1.id", "cam0"), "cameras[1].id", "named twice"),
    "missing camera file": (_set("cameras.0.source", "nope.mp4"), "cameras[0].source",
                            "no such file"),
    "no camera": (_drop("cameras"), "cameras", "at least one"),
    "cameras not tables": (_set("cameras", ["cam0"]), "cameras[0]", "must be a table"),
    "http van url": (_set("van.url", "http://127.0.0.1:8443"), "van.url", "https://"),
    "van url without port": (_set("van.url", "https://van.local"), "van.url", "port"),
    "van url with a path": (_set("van.url", "https://van.local:1/x?y"), "van.url", "no path"),
    "van url with a password": (_set("van.url", "https://a:b@van.local:1"), "van.url",
                                "no user"),
    "van url bad port": (_set("van.url", "https://van.local:99999"), "van.url", "Port"),
    "short fingerprint": (_set("van.tls_fingerprint", "AB:CD"), "van.tls_fingerprint",
                          "32 bytes"),
    "fingerprint not hex": (_set("van.tls_fingerprint", "zz" * 32), "van.tls_fingerprint",
                            "non-hexadecimal"),
    "van keys of a unit": (_set("van.public_keys", "keys/public.keys"), "van.public_keys",
                           "role is unit, expected van"),
    "van keys not a key file": (_set("van.public_keys", "clip.mp4"), "van.public_keys",
                                "not an lfr key file"),
    "outbox folder missing": (_set("outbox", "gone/outbox.sqlite"), "outbox", "no such file"),
    "unit signing key missing": (_drop("signing_key"), "signing_key", "missing"),
    "a watchlist file named": (_set("watchlist", "clip.mp4"), "watchlist",
                               "names no watchlist file any more"),
    "authority missing": (_drop("authority"), "authority", "missing"),
    "authority keys of a unit": (_set("authority.public_keys", "keys/public.keys"),
                                 "authority.public_keys", "role is unit, expected authority"),
    "audit folder missing": (_set("audit", "gone/audit.log"), "audit", "no such file"),
    "health not a table": (_set("health", 5), "health", "must be a table"),
    "health unknown key": (_set("health.interval", 5), "health.interval", "unknown key"),
    "health interval too short": (_set("health.interval_s", 0.5), "health.interval_s",
                                  "must lie in 1-300 seconds"),
    "health interval too long": (_set("health.interval_s", 301), "health.interval_s",
                                 "must lie in 1-300 seconds"),
    "health interval nan": (_set("health.interval_s", float("nan")), "health.interval_s",
                            "must lie in 1-300 seconds"),
    "health interval a bool": (_set("health.interval_s", True), "health.interval_s",
                               "must be a number, got true or false"),
    "health interval text": (_set("health.interval_s", "5"), "health.interval_s",
                             "must be a number, got a string"),
    "ice url scheme": (_set("ice_servers", [{"urls": ["http://stun"]}]),
                       "ice_servers[0].urls[0]", "stun:"),
    "ice no urls": (_set("ice_servers", [{"urls": []}]), "ice_servers[0].urls",
                    "at least one"),
    "ice credential alone": (_set("ice_servers", [{"urls": ["turn:t"], "credential": "x"}]),
                             "ice_servers[0].credential", "without a username"),
    "ice unknown key": (_set("ice_servers", [{"urls": ["turn:t"], "password": "x"}]),
                        "ice_servers[0].password", "unknown key"),
    "accelerator not a table": (_set("accelerator", "edgetpu"), "accelerator",
                                "must be a table"),
    "accelerator unknown key": (_edgetpu(model="x"), "accelerator.model", "unknown key"),
    "accelerator kind unknown": (_edgetpu(kind="gpu"), "accelerator.kind",
                                 "must be one of cpu, edgetpu"),
    "accelerator kind missing": (_edgetpu(kind=None), "accelerator.kind", "missing"),
    "cpu with a model": (_set("accelerator", {"kind": "cpu", "device": "usb"}),
                         "accelerator.device", 'only with kind = "edgetpu"'),
    "edgetpu without a detector": (_edgetpu(detector_model=None), "accelerator.detector_model",
                                   "missing"),
    "edgetpu without a digest": (_edgetpu(embedder_sha256=None), "accelerator.embedder_sha256",
                                 "missing"),
    "edgetpu model missing": (_edgetpu(embedder_model="gone_edgetpu.tflite"),
                              "accelerator.embedder_model", "no such file"),
    "edgetpu model not compiled": (_edgetpu(detector_model="clip.mp4"),
                                   "accelerator.detector_model",
                                   "not an Edge TPU compiled model"),
    "edgetpu short digest": (_edgetpu(detector_sha256="abcd"), "accelerator.detector_sha256",
                             "64 hex digits"),
    "edgetpu digest not hex": (_edgetpu(detector_sha256="zz" * 32),
                               "accelerator.detector_sha256", "64 hex digits"),
    "edgetpu bad device": (_edgetpu(device="usb0"), "accelerator.device",
                           "must be usb, pci, usb:N, pci:N or :N"),
    "edgetpu empty library": (_edgetpu(library=""), "accelerator.library", "empty"),
    "edgetpu device a number": (_edgetpu(device=0), "accelerator.device",
                                "must be a string, got an integer"),
}


@pytest.mark.parametrize("case", UNIT_REFUSALS)
def test_a_bad_unit_config_is_refused_naming_the_key_and_the_file(
        case: str, unit_folder: tuple[Path, Config]) -> None:
    change, key, problem = UNIT_REFUSALS[case]
    folder, data = unit_folder
    change(data, folder)
    path = write_config(folder / "unit.toml", data)
    with pytest.raises(NodeConfigError) as refused:
        load_unit_config(path)
    assert f"config file {path}: {key}: " in str(refused.value)
    assert problem in str(refused.value)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "no such file"),
    (b"id = \n", "not valid TOML"),
    (b'id = "\xff"\n', "not UTF-8"),
    (b"#" * (MAX_CONFIG_BYTES + 1), "over the limit"),
    (b"id = " + b"[" * 30_000, "nested too deeply"),  # tomllib recurses once per level
    ("dir", "is a directory"),
    ("fifo", "FIFO"),
])
def test_a_config_file_that_cannot_be_read_is_refused_naming_it(
        tmp_path: Path, content: bytes | str | None, problem: str) -> None:
    path = tmp_path / "van.toml"
    if content == "dir":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    for load in (load_van_config, load_unit_config):
        with pytest.raises(NodeConfigError) as refused:
            load(path)
        assert str(path) in str(refused.value)
        assert problem in str(refused.value)


# -- fuzz -----------------------------------------------------------------------------------

_KEYS = st.sampled_from(["id", "state_dir", "keys", "tls", "signaling", "console", "host",
                         "port", "signing", "encryption", "certificate", "key", "signing_key",
                         "outbox", "watchlist", "authority", "audit", "health", "interval_s",
                         "van", "url",
                         "public_keys", "tls_fingerprint", "cameras", "source", "paced",
                         "ice_servers", "urls", "username", "credential", "accelerator",
                         "kind", "detector_model", "embedder_sha256", "device", "x"])
_SCALARS = st.one_of(st.text(max_size=40), st.integers(), st.booleans(),
                     st.floats(allow_nan=True), st.sampled_from(
                         ["https://127.0.0.1:1", "127.0.0.1", "::1", "keys", "stun:x",
                          "keys/signing.key", "state", "AB" * 32, "\x00", "../..", "/dev/zero",
                          "edgetpu", "cpu", "usb:0",
                          "/" * 5000]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)
_TOMLISH = st.text(alphabet=st.sampled_from(list('[]{}="\'.,#\n \\tab1-+:_eE09xu')),
                   max_size=200)


def _fuzz_text(data: Config | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return toml_text(data)
    except (TypeError, ValueError):
        return repr(data)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(_TOMLISH, st.dictionaries(_KEYS, _VALUES, max_size=8)))
def test_arbitrary_toml_raises_nothing_but_a_config_error(
        van_folder: tuple[Path, Config], data: Config | str) -> None:
    folder, _ = van_folder
    path = folder / "fuzz.toml"
    path.write_text(_fuzz_text(data), encoding="utf-8", errors="surrogatepass")
    for load in (load_van_config, load_unit_config):
        refusal = ""
        try:
            load(path)
        except NodeConfigError as exc:
            refusal = str(exc)
        assert not refusal or str(path) in refusal
