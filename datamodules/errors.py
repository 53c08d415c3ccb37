"""The one base class of errors in what a user gave: a file, a key, a value, a dataset.

Every such error's message names the thing and the fix, so `w2svqa` prints it alone (no
traceback) and exits 2; anything else is a bug and keeps its traceback. The classes that derive
from it also derive from the builtin they always were (ValueError, ...), so callers that catch
those keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the file or key and what to do."""
