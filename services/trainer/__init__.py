"""The trainer: periodic ranker refreshes behind a champion/challenger gate.

The refresh is :class:`services.trainer.trainer.Trainer`. This package imports
nothing itself, so reading :mod:`services.trainer.settings` does not load
PyTorch.
"""
