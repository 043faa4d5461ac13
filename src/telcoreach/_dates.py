"""Calendar names shared by adapters and models."""

#: Three-letter month names in lower case, January first, as in bank data.
MONTHS = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
