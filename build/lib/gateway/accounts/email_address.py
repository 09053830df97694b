"""Email addresses: one composed form, and no invisible or look-alike characters (decision 0014)."""

from __future__ import annotations

import re
import unicodedata

from gateway.core.errors import BadRequest

LENGTH_MAX = 254
SHAPE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# Controls, format characters (zero-width space and joiners, BOM, soft hyphen, bidi overrides),
# surrogates, private use, unassigned, and every separator: none of them belongs in an address,
# and each lets a second account look like the first.
REFUSED_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))
# Combining marks left after composition: at most this many on one letter.
MARKS_IN_A_ROW_MAX = 2


def normalise(text: str) -> str:
    """The form addresses are stored and looked up in: stripped, canonically composed (NFC), so
    "e" + combining acute and the single "é" are one address."""
    return unicodedata.normalize("NFC", text.strip())


def parse(text: str) -> str:
    """The address in its stored form, or a 400 invalid_email."""
    address = normalise(text)
    if len(address) > LENGTH_MAX or not SHAPE.match(address) or not _plain(address):
        raise BadRequest("email is not a valid address", code="invalid_email")
    return address


def _plain(address: str) -> bool:
    # A compatibility form (full-width letters, ligatures, superscripts) looks like its plain
    # letters: refused rather than silently folded, so what the user typed is what is stored.
    if unicodedata.normalize("NFKC", address) != address:
        return False
    marks_in_row = 0
    previous_category = "Po"  # the start of the address is no letter
    for character in address:
        category = unicodedata.category(character)
        if category in REFUSED_CATEGORIES:
            return False
        if category.startswith("M"):
            marks_in_row += 1
            # A mark belongs on a letter: not on '@', '.', a digit, or nothing.
            if marks_in_row > MARKS_IN_A_ROW_MAX or not previous_category.startswith(("L", "M")):
                return False
        else:
            marks_in_row = 0
        previous_category = category
    return True
