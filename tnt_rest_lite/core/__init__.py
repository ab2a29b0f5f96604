"""Layer 1, the foundation every other layer uses: paths, the results store, normalisation, formatting,
progress bars and plotting conventions. Imports nothing of the package but ``profiles``."""
