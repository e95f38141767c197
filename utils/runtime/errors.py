"""Errors the user can act on."""


class UserError(Exception):
    """A problem the user can fix (a missing file, a wrong flag).

    Scripts print its message as one paragraph and exit with status 2 instead of
    showing a traceback.
    """
