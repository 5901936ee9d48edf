"""A node's configuration file: ``van.toml`` (``load_van_config``) and ``unit.toml``
(``load_unit_config``), read strictly and validated when loaded.

The file is TOML (stdlib ``tomllib``), read with ``guards.files.read_user_file`` (a regular file
of at most ``MAX_CONFIG_BYTES``). Like Frigate's ``extra="forbid"`` models, an unknown key is
refused rather than ignored (a misspelt ``paced`` must not silently mean ``false``), and so are
a wrong type, a missing required key, a bad value and a file or folder the node needs that is
not there. Every refusal is a ``NodeConfigError`` (a ``UserInputError``: exit code 2) whose text
names the file and the key path (``cameras[1].source``). Relative paths are taken from the
config file's folder, so a node started from anywhere reads the same files.

- ``toml_table`` - reading one table strictly (``ConfigTable``), the error family
- ``van``        - ``VanConfig``
- ``unit``       - ``UnitConfig`` and its cameras
- ``ice_servers`` - ``IceServer``: the ``[[ice_servers]]`` of either config

docs/DELIVERY.md "Configuration" describes every key, with an example of each file.
"""

from lfr.config.ice_servers import IceServer
from lfr.config.toml_table import MAX_CONFIG_BYTES, NodeConfigError
from lfr.config.unit import CameraEntry, UnitConfig, load_unit_config
from lfr.config.van import ListenAddress, VanConfig, load_van_config

__all__ = ["MAX_CONFIG_BYTES", "CameraEntry", "IceServer", "ListenAddress", "NodeConfigError",
           "UnitConfig", "VanConfig", "load_unit_config", "load_van_config"]
