"""Commands for keys and national cryptography: ``keys``."""
