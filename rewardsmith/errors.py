"""Errors that end a command with one clear line (no traceback)."""


class UserError(Exception):
    """Bad input from the user: unknown task, bad setting, missing key, unreadable run dir."""
