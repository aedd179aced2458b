"""pytest plugin for bench/mutation.sh: any failed run exits with status 1.

mutmut 2.5 reads only exit status 1 as "the tests failed"; pytest's 2 (a
mutant that breaks the module's import fails collection), 3, 4 and 5 would
count the mutant as survived. Loaded with `-p mutmut_exit` from the work copy.
"""

from __future__ import annotations


def pytest_sessionfinish(session, exitstatus) -> None:  # pytest's hook
    if exitstatus != 0:
        session.exitstatus = 1
