"""Commands for federated learning: ``fl``."""
