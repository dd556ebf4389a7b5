"""Online learning in the hot path: delayed labels, River models, drift.

The stage is :class:`services.learner.stage.LearningStage`. This package
imports nothing itself, so reading :mod:`services.learner.settings` does not
load River.
"""
