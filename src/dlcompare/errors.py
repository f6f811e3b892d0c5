"""The one exception type that means "the user can fix this"."""


class UserError(Exception):
    """A problem with the user's input, params or environment.

    The CLI prints its message as a single line and exits non-zero; anything
    else that escapes is a bug in dlcompare and keeps its traceback.
    """
