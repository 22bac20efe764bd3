"""Keep Ultralytics fully offline (ML-STACK-NOTES.md, "Ultralytics, fully offline").

Ultralytics reads its environment at import time: without these settings the
import does DNS look-ups, font checks download Arial, and a missing package
triggers ``pip install``. :func:`configure_offline` must therefore run before
the first ``import ultralytics``; :func:`import_ultralytics` does both in order.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["OFFLINE_ENV", "YoloOfflineError", "configure_offline", "import_ultralytics"]

OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
"""Set before import: no connectivity checks, no auto-install of missing packages."""

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


class YoloOfflineError(RuntimeError):
    """Ultralytics was imported before it could be configured offline."""


def _font_source() -> Path:
    # matplotlib ships DejaVuSans; any TTF satisfies Ultralytics' font check.
    import matplotlib  # noqa: PLC0415 - only needed to find its bundled font

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def configure_offline(config_dir: Path) -> Path:
    """Set the offline environment and place a font where Ultralytics looks for Arial.

    Returns the config dir. Calling it again with the same dir is harmless; a
    different dir after Ultralytics was imported is refused, because Ultralytics
    has already bound its settings file to the first one.
    """
    config_dir = config_dir.resolve()
    if "ultralytics" in sys.modules:
        current = os.environ.get("YOLO_CONFIG_DIR")
        if current is None or Path(current).resolve() != config_dir or not _env_is_offline():
            raise YoloOfflineError(
                "ultralytics was imported before configure_offline(); import it only "
                "through forja_trainer.yolo.offline.import_ultralytics()"
            )
    os.environ.update(OFFLINE_ENV)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    source = _font_source()
    for name in FONT_NAMES:
        target = font_dir / name
        if not target.exists():
            shutil.copyfile(source, target)
    return config_dir


def _env_is_offline() -> bool:
    return all(os.environ.get(k) == v for k, v in OFFLINE_ENV.items())


def import_ultralytics(config_dir: Path) -> ModuleType:
    """Configure offline, import Ultralytics, and turn off its settings sync (analytics)."""
    configure_offline(config_dir)
    # Imported here, never at module top: the environment above must come first.
    import ultralytics  # noqa: PLC0415
    from ultralytics.utils import SETTINGS  # noqa: PLC0415

    if SETTINGS.get("sync", False):
        SETTINGS.update(sync=False)  # type: ignore[no-untyped-call]
    return ultralytics
