"""Where the installation's files outside the package are: hook material (``include/hooks/``).

The package may be installed anywhere (editable in the source tree, or into site-packages in the
Docker image), so nothing is looked up relative to the package's own files:

- ``$YS1000_HOOKS_DIR`` when set;
- else ``include/hooks/`` next to the configuration directory in use
  (``<config dir>/../include/hooks``, config dir = ``$YS1000_CONFIG_DIR`` or the default of
  ``ys1000.config.default_config_dir()``) — the layout of the source tree and of the image
  (``/opt/ys1000/config`` and ``/opt/ys1000/include``);
- else ``HooksDirNotFound``, naming both variables and the directory it looked at.
"""

from __future__ import annotations

import os
from pathlib import Path

from ys1000.config.loader import CONFIG_DIR_ENV, default_config_dir

HOOKS_DIR_ENV = "YS1000_HOOKS_DIR"


class HooksDirNotFound(LookupError):
    """No hook material directory: neither ``$YS1000_HOOKS_DIR`` nor one next to the config dir."""


def hooks_dir() -> Path:
    """The directory of hook material (Ansible playbooks, scripts) that plans' ``playbook_file``
    paths are relative to."""
    env = os.environ.get(HOOKS_DIR_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise HooksDirNotFound(f"{HOOKS_DIR_ENV}={env} is not a directory")
        return path
    config_dir = default_config_dir()
    path = config_dir.parent / "include" / "hooks"
    if path.is_dir():
        return path
    source = (
        f"{CONFIG_DIR_ENV}={os.environ[CONFIG_DIR_ENV]}"
        if os.environ.get(CONFIG_DIR_ENV)
        else f"the default config dir {config_dir} ({CONFIG_DIR_ENV} is not set)"
    )
    raise HooksDirNotFound(
        f"no hook material directory: {HOOKS_DIR_ENV} is not set and {path} (next to "
        f"{source}) does not exist; set {HOOKS_DIR_ENV} to the include/hooks directory "
        f"or {CONFIG_DIR_ENV} to a config/ directory that has include/hooks beside it"
    )
