"""Fixtures for the checks of deploy/: parsed files and the known settings."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SERVICES_DIR = DEPLOY.parent / "services"


def settings_variables(settings_class: type[BaseSettings]) -> set[str]:
    """Return every environment variable a settings class reads, nested ones too."""
    config = settings_class.model_config
    prefix = str(config.get("env_prefix", "")).upper()
    delimiter = config.get("env_nested_delimiter")
    names: set[str] = set()
    for field_name, info in settings_class.model_fields.items():
        names.add(f"{prefix}{field_name.upper()}")
        annotation = info.annotation
        if not isinstance(annotation, type) or not issubclass(annotation, BaseModel):
            continue
        # A nested settings class also reads variables of its own prefix.
        if issubclass(annotation, BaseSettings):
            names |= settings_variables(annotation)
        if delimiter:
            names |= {
                f"{prefix}{field_name.upper()}{delimiter}{field.upper()}"
                for field in annotation.model_fields
            }
    return names


def settings_classes() -> list[type[BaseSettings]]:
    """Import every ``services/<name>/settings.py`` and return its settings classes."""
    classes: list[type[BaseSettings]] = []
    for path in sorted(SERVICES_DIR.glob("*/settings.py")):
        module = importlib.import_module(f"services.{path.parent.name}.settings")
        classes += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseSettings)
            and value.__module__ == module.__name__
        ]
    return classes


@pytest.fixture(scope="session")
def known_variables() -> set[str]:
    names: set[str] = set()
    for settings_class in settings_classes():
        names |= settings_variables(settings_class)
    return names


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


@pytest.fixture(scope="session")
def manifests() -> list[dict[str, Any]]:
    """Return every Kubernetes object under deploy/k8s, kustomization excluded."""
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                document["__file__"] = path.name
                documents.append(document)
    return documents
