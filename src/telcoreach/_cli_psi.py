"""Commands for private set intersection: ``psi``."""
