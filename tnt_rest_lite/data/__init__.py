"""Layer 4, data: the generated shapes and scenes, real datasets and their splits, sample photos."""
