"""Commands of the quality stage: ``quality``."""
