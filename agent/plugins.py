"""Finding the modules of a package that register themselves (scanners, command
handlers): importing every module of the package once. A module that fails to import
is logged and left out, so one broken plugin never stops the agent."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from kernel.logs import log_event

logger = logging.getLogger("redflag.agent.plugins")

_imported: set[str] = set()


def import_every_module(package_name: str) -> None:
    """Import each module of `package_name` (once per process)."""
    if package_name in _imported:
        return
    _imported.add(package_name)
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        name = f"{package_name}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as exc:
            log_event(
                logger,
                logging.ERROR,
                "agent.plugin_broken",
                f"{name} could not be loaded: {type(exc).__name__}: {exc}",
                exc_info=True,
                module=name,
            )
