"""The one exception type that the CLI turns into a single clear error line."""


class UserError(Exception):
    """Bad input or a missing resource the user can fix; printed as one line, no traceback."""
