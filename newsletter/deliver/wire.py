"""The messages between a sending run and its workers: tuples over a pipe.

    run -> worker     ("jobs", [Job, ...])         more to send
                      ("stop",)                    drop what you hold and say which
                      ("quit",)                    close the connection and return
    worker -> run     ("ready", None | (message, hint))   once, after connecting
                      ("done", number, Failure | None)    one per message
                      ("dropped", [number, ...], why)     jobs it will not send
                                                          (why: "stop" or "gave up")
                      ("error", traceback, [number, ...]) it broke
    pool -> run       ("lost",)                    the worker's pipe closed

Plain tuples of str, int and bool: cheap to pickle thousands of times a second,
and the same whether the worker is a process or a thread.
"""

from __future__ import annotations

from typing import Any

from newsletter.transports import PermanentFailure, SendFailure, TemporaryFailure

# A job: (number within the run, address, display name, edition value, subscriber
# id, variant: the index of the prebuilt email it gets, `deliver.variants`).
Job = tuple[int, str, str, str, int, int]
# A SendFailure on the wire: (permanent, recipient, code, text, hard_bounce, fatal).
Failure = tuple[bool, str, int | None, str, bool, bool]

# To a worker.
JOBS = "jobs"
STOP = "stop"
QUIT = "quit"
# From a worker (or, for LOST, from the pool).
READY = "ready"
DONE = "done"
DROPPED = "dropped"
ERROR = "error"
LOST = "lost"
# Why a worker dropped its jobs.
STOPPED = "stop"
GAVE_UP = "gave up"


def failure_to_wire(failure: SendFailure) -> Failure:
    """The tuple form of a send failure."""
    return (
        isinstance(failure, PermanentFailure),
        failure.recipient,
        failure.code,
        failure.text,
        getattr(failure, "hard_bounce", False),
        failure.fatal,
    )


def failure_from_wire(wire: tuple[Any, ...] | None) -> SendFailure | None:
    """The send failure of a "done" message; None if the message was accepted."""
    if wire is None:
        return None
    permanent, recipient, code, text, hard_bounce, fatal = wire
    failure: SendFailure = (
        PermanentFailure(recipient, code, text, hard_bounce)
        if permanent
        else TemporaryFailure(recipient, code, text)
    )
    failure.fatal = fatal
    return failure
