"""Layer 4, explanations: attention measures and maps, CAMs, pointing games, and the figure chapters' plots."""
