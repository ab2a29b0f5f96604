"""Layer 5, the experiments: recipes, splits, the training, figure and detection tables, verdicts, tools."""
