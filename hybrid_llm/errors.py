"""The one exception type whose message is shown to the user as is."""


class UserError(Exception):
    """A problem the user can fix; `str(error)` is one line saying what and how."""
