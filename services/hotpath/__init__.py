"""The hot path: one consumer group that applies features, learns and scores.

Every event passes through the stages in order, within one batch of one
partition, so the slate published for event N is computed from state that
already includes event N.
"""
