"""Progress with an ETA on long work: building a lab, running trials, long commands.

:func:`progress` wraps `tqdm <https://tqdm.github.io>`_ (well kept, the usual choice): in a
notebook it draws an ipywidgets bar, in a terminal a line on stderr, and elsewhere
(a pipe, CI's log) nothing unless asked. ``enabled=None`` decides so; ``True`` or
``False`` forces it. ``UCSDK_PROGRESS=0`` turns every bar off, ``=1`` on.

Example:
    >>> wanted(False), wanted(True)
    (False, True)
    >>> with progress(3, "trials", enabled=False) as bar:  # silent: a pipe, a test
    ...     _ = bar.update(3)
    >>> bar.disable
    True
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def wanted(enabled: bool | None = None) -> bool:
    """Whether a progress bar should show: ``enabled`` if given, else ``UCSDK_PROGRESS``,
    else in a notebook or when stderr is a terminal."""
    if enabled is not None:
        return bool(enabled)
    env = os.environ.get("UCSDK_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    return _in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(total: int, desc: str, *, enabled: bool | None = None, unit: str = "step") -> Any:
    """A tqdm bar over ``total`` steps (a context manager; ``.update(n)``,
    ``.set_postfix_str(text)``); a silent one when :func:`wanted` says no."""
    show = wanted(enabled)
    if show and _in_notebook():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm

    class Bar(tqdm):  # type: ignore[misc,valid-type]
        # tqdm's monitor thread outlives the bar by up to 10 s (it would be left behind
        # by whatever showed the bar); every bar here is updated as its steps end anyway.
        monitor_interval = 0

    return Bar(total=total, desc=desc, unit=unit, disable=not show, leave=True)
