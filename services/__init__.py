"""Cartwheel services: one sub-package per deployable process, plus common/."""
