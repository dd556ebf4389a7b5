"""The demo: the whole pipeline on real shop events, from nothing to a report."""
