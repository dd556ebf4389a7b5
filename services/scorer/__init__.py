"""Scoring: candidates, ranking, rules and the four recommendation surfaces.

The stage is :class:`services.scorer.stage.ScoringStage`, built by
:func:`services.scorer.factory.build_learning_and_scoring` in the hot path.
This package imports nothing itself, so reading
:mod:`services.scorer.settings` does not load PyTorch.
"""
