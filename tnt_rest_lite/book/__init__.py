"""Layer 6, the book's machinery: set-up cells, the notebook runner, the browser check, source display."""
