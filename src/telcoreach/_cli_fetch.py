"""Commands of the delivery stage: ``fetch``."""
