"""Model announcements: the ranker each one names, and the earlier versions.

Unless it is given other functions, the watcher loads an announced version
with :func:`load_ranker` and looks up its fallbacks with
:func:`earlier_announcements`. Both read the registry volume, so the watcher
calls them on its load threads only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from models.errors import ArtifactIncompatibleError
from models.multitask.ranker import Ranker
from models.registry import ModelAnnouncement, ModelRegistry, load_artifact

__all__ = ["earlier_announcements", "load_ranker"]

logger = logging.getLogger(__name__)


def load_ranker(announcement: ModelAnnouncement) -> Ranker:
    """Load and verify the artifact an announcement points to.

    Raises:
        ArtifactError: the artifact is missing, corrupt, incompatible or
            contains another version than announced.
    """
    artifact = load_artifact(Path(announcement.artifact_uri))
    found = artifact.metadata.model_version
    if found != announcement.model_version:
        raise ArtifactIncompatibleError(
            f"artifact at {announcement.artifact_uri} is model_version={found!r}, "
            f"announced {announcement.model_version!r}; announce the right path"
        )
    return Ranker.from_artifact(artifact)


def earlier_announcements(announcement: ModelAnnouncement) -> list[ModelAnnouncement]:
    """Return the versions saved before an announced one, newest first.

    They are read from the registry that contains the announced artifact,
    since the compacted topic may no longer contain their announcements. Each comes as
    an announcement of its registry path whose ``announced_at`` is the
    artifact's creation time, because the registry keeps no announcement times. A
    version is earlier when it was created before the announcement. The
    announced version's directory is never read: a hung read of its metadata may
    be why it failed, and it would block the listing as well. So a version saved
    after the announced one but before its announcement counts as earlier too.
    """
    artifact = Path(announcement.artifact_uri)
    version = announcement.model_version
    if artifact.name != version or artifact.parent.name != announcement.model_name:
        logger.warning(
            "no earlier versions to fall back to, the artifact is outside a "
            "registry model_version=%s uri=%s",
            version,
            artifact,
        )
        return []
    registry = ModelRegistry(artifact.parent.parent)
    try:
        history = registry.history(announcement.model_name, exclude={version})
    except OSError:
        logger.exception(
            "listing earlier versions failed model_version=%s registry=%s",
            version,
            registry.root,
        )
        return []
    return [
        ModelAnnouncement(
            model_name=metadata.model_name,
            model_version=metadata.model_version,
            artifact_uri=str(registry.path_of(metadata.model_version)),
            announced_at=metadata.created_at,
        )
        for metadata in reversed(history)
        if metadata.created_at < announcement.announced_at
    ]
