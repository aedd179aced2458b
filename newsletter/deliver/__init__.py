"""Email an issue to its subscribers, exactly once; the orchestration apart from the bytes.

    issue.py    deliver_issue: lateness, dry run, the lock, retry rounds, the report
    run.py      SendRun: jobs out, outcomes classified and group-committed to the ledger
    workers.py  the worker processes or threads, one connection each (no ledger)
    wire.py     the messages between the two, over a pipe
    proof.py    send_test: one test copy, outside the ledger

The orchestration (issue, run) knows the ledger and nothing of sockets; the
workers push prebuilt bytes through a transport (`newsletter.transports`) and
know nothing of campaigns.
"""
