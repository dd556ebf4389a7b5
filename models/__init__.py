"""Models: online River learners, the multi-task PyTorch ranker and the registry."""
