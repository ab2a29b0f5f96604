"""Layer 6, reports: the summary pages and markdown of stored results."""
