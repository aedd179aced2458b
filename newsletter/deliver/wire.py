"""The messages between a sending run and its workers: tuples over a pipe.

    run -> worker     ("jobs", [Job, ...])         more to send
                      ("stop",)                    drop what you hold and say which
                      ("quit",)                    close the connection and return
    worker -> run     ("ready", None | (message, hint))   once, after connecting
                      ("done", number, Failure | None)    one per message
                      ("dropped", [number, ...], why)     jobs it will not send
                                                          (why: "stop", "gave up", or
                                                          "refused": the server refused
                                                          their variant's message)
                      ("error", traceback, [number, ...]) it broke
    pool -> run       ("lost",)                    the worker's pipe closed

Plain tuples of str, int and bool: cheap to pickle thousands of times a second,
and the same whether the worker is a process or a thread.
"""

from __future__ import annotations

from typing import Any

from newsletter.smtp_replies import Scope
from newsletter.transports.failures import PermanentFailure, SendFailure, TemporaryFailure

# A job: (number within the run, address, display name, edition value, subscriber
# id, variant: the index of the prebuilt email it gets, `deliver.variants`).
Job = tuple[int, str, str, str, int, int]
# A SendFailure on the wire: (permanent, recipient, code, text, hard_bounce, fatal,
# scope name).
Failure = tuple[bool, str, int | None, str, bool, bool, str]

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
REFUSED = "refused"  # the server refused the message of that variant


def failure_to_wire(failure: SendFailure) -> Failure:
    """The tuple form of a send failure."""
    return (
        isinstance(failure, PermanentFailure),
        failure.recipient,
        failure.code,
        failure.text,
        getattr(failure, "hard_bounce", False),
        failure.fatal,
        failure.scope.name,
    )


def failure_from_wire(wire: tuple[Any, ...] | None) -> SendFailure | None:
    """The send failure of a "done" message; None if the message was accepted."""
    if wire is None:
        return None
    permanent, recipient, code, text, hard_bounce, fatal, scope = wire
    if permanent:
        return PermanentFailure(recipient, code, text, hard_bounce, scope=Scope[scope], fatal=fatal)
    return TemporaryFailure(recipient, code, text, scope=Scope[scope], fatal=fatal)
