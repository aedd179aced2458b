"""mutmut 2.x hooks for bench/mutation.sh (copied into the work copy it mutates).

$MUTATION_FUNCTIONS (space-separated top-level function, class and constant
names) limits the mutants to the lines of those definitions; empty: the whole
module.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path


@functools.cache
def _wanted_lines(filename: str, names: str) -> frozenset[int] | None:
    wanted = set(names.split())
    if not wanted:
        return None
    tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined = {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined = {node.name}
        else:
            continue
        if defined & wanted:
            decorators = getattr(node, "decorator_list", [])
            first = min([node.lineno, *(d.lineno for d in decorators)])
            lines.update(range(first - 1, (node.end_lineno or node.lineno)))
    return frozenset(lines)


def pre_mutation(context) -> None:  # mutmut's hook
    lines = _wanted_lines(context.filename, os.environ.get("MUTATION_FUNCTIONS", ""))
    if lines is not None and context.current_line_index not in lines:
        context.skip = True
