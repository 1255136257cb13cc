"""What the app imports before it serves its first request.

The package imports heavy libraries inside the functions that need them (a script that only
reads data never loads torch). In the app that is a race: the first page load fires several
events at once, each on its own Gradio worker thread, and two threads importing the same
library for the first time can see it half-initialised. transformers' lazy module showed it
after every start: "(cannot render the chat prompt: cannot import name 'AutoTokenizer' from
'transformers' (<server path>))" on the first page, gone on the next load.

So `build_demo` calls `import_for_requests()` once, before any request: it imports every
module of the package and every import written inside one of its functions (found by reading
the source, so a new one is covered the day it is written), and resolves each name imported
from a lazy module (`from transformers import AutoTokenizer`). Only the libraries a user turns
on for a job (OPTIONAL_IMPORTS) are left for later.

    from noshow.app.startup import import_for_requests
    failed = import_for_requests()   # [(module, error)] for what could not be imported
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import pkgutil
from pathlib import Path

log = logging.getLogger(__name__)

# Imported only for what a user switches on (W&B logging in a job's thread, a label export
# to the hub); never by a request.
OPTIONAL_IMPORTS = ("wandb", "datasets")
PACKAGE = "noshow"


@functools.cache
def function_imports(root: str | Path | None = None) -> tuple[tuple[str, str | None], ...]:
    """(module, name or None) of every absolute import inside a function of the package."""
    root = Path(root) if root else Path(__file__).resolve().parents[1]
    found: set[tuple[str, str | None]] = set()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found.update((a.name, None) for a in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    found.update((inner.module, a.name) for a in inner.names)
    return tuple(sorted(found, key=lambda item: (item[0], item[1] or "")))


def import_for_requests() -> list[tuple[str, str]]:
    """Import every module of the package and every function-level import of it (bar
    OPTIONAL_IMPORTS), once; returns [(module, error)] for those that failed (a missing
    optional extra: the request that needs it will say so)."""
    from noshow.system.quiet import silence_third_party

    silence_third_party()  # before peft imports bitsandbytes
    failed: list[tuple[str, str]] = []
    package = importlib.import_module(PACKAGE)
    names = [m.name for m in pkgutil.walk_packages(package.__path__, PACKAGE + ".")]
    for module, attr in [(n, None) for n in names] + list(function_imports()):
        if module.split(".")[0] in OPTIONAL_IMPORTS:
            continue
        try:
            loaded = importlib.import_module(module)
            if attr not in (None, "*") and not hasattr(loaded, attr):  # resolves a lazy name
                importlib.import_module(f"{module}.{attr}")
        except Exception as e:  # noqa: BLE001 - an optional extra may be missing here
            failed.append((module, f"{type(e).__name__}: {e}"))
    for module, error in failed:
        log.info("Not imported at start-up: %s (%s)", module, error)
    return failed
