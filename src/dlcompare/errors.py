"""How a command ends early: a mistake the user can fix, or a SIGTERM."""


class UserError(Exception):
    """A problem with the user's input, params or environment.

    The CLI prints its message as a single line and exits non-zero; anything
    else that escapes is a bug in dlcompare and keeps its traceback.
    """


class Terminated(BaseException):
    """SIGTERM arrived: the command unwinds like Ctrl-C, so half-built outputs are removed."""


_terminated = False


def on_sigterm(signum, frame):
    """The SIGTERM handler: raise Terminated in the main thread, and remember that it came.

    Python drops an exception raised while a __del__ or a weakref callback runs (it only prints "Exception
    ignored"), so the command would go on; the places that commit outputs ask again (raise_if_terminated).
    """
    global _terminated
    _terminated = True
    raise Terminated()


def raise_if_terminated() -> None:
    if _terminated:
        raise Terminated()
