"""Hot swap of the ranker: follow the ``models`` topic and load new versions.

:class:`ModelWatcher` follows the announcements of one model name
(:mod:`~services.common.model_watcher.watcher`) and hands each to
:class:`~services.common.model_watcher.loads.RankerLoads`, which loads it on a
bounded thread, counts failed attempts, skips, retries and falls back.
:func:`load_ranker` and :func:`earlier_announcements`
(:mod:`~services.common.model_watcher.announcements`) read the ranker and the
earlier versions an announcement points to. Scorers only call
:meth:`ModelWatcher.current`.
"""

from __future__ import annotations

from services.common.model_watcher.announcements import (
    earlier_announcements,
    load_ranker,
)
from services.common.model_watcher.metrics import (
    MODEL_ANNOUNCEMENT_SKIPPED,
    MODEL_BEHIND_ANNOUNCEMENT,
    MODEL_BLOCKED_LOADS,
    MODEL_LOAD_SECONDS,
    MODEL_LOADS,
    MODEL_WATCHER_RUNNING,
    LoadOutcome,
)
from services.common.model_watcher.watcher import ModelWatcher

__all__ = [
    "MODEL_ANNOUNCEMENT_SKIPPED",
    "MODEL_BEHIND_ANNOUNCEMENT",
    "MODEL_BLOCKED_LOADS",
    "MODEL_LOADS",
    "MODEL_LOAD_SECONDS",
    "MODEL_WATCHER_RUNNING",
    "LoadOutcome",
    "ModelWatcher",
    "earlier_announcements",
    "load_ranker",
]
