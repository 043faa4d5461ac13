"""Commands for consent and data-subject rights: ``consent``, ``optout``, ``forget``, ``pia``."""
