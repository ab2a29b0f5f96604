"""Layer 4, the training engine: recipe, loaders, tasks, optimizer, loop, checkpoints, DDP, curves."""
