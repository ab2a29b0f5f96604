"""Layer 2, the building blocks of every model: the one attention module, the transformer block, GL."""
