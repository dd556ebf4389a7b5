"""Conversion between a trained ranker and the tensors stored in its artifact.

Only tensors are stored (safetensors), never pickled objects; the model is
rebuilt from its config and feature spec, and the tensors must match it exactly.
"""

from __future__ import annotations

import torch

from models.errors import ArtifactIncompatibleError
from models.multitask.features import FeatureSpec
from models.multitask.model import ModelConfig, RankerModule, build_model

__all__ = ["model_from_tensors", "model_tensors"]


def model_tensors(model: RankerModule) -> dict[str, torch.Tensor]:
    """Return the model's persistent state as contiguous CPU tensors."""
    return {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }


def model_from_tensors(
    spec: FeatureSpec, config: ModelConfig, tensors: dict[str, torch.Tensor]
) -> RankerModule:
    """Rebuild a model and load its weights, in eval mode.

    Raises:
        ArtifactIncompatibleError: the tensors miss a weight, hold an unknown
            one or have another shape than the config and spec imply.
    """
    model = build_model(spec, config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ArtifactIncompatibleError(
            f"weights do not fit a {config.architecture} model with the stored "
            f"config and feature spec: {exc}; retrain or load it with the code "
            "version that wrote it"
        ) from exc
    return model.eval()
