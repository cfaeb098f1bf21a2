"""Start-up of every Python child of an offline hybrid-llm process: re-install the network guard.

Python imports `sitecustomize` from the first path entry that has one, so this file is found
before any other; it then runs the next one on the path, which it would otherwise hide.
"""

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _guard_child() -> None:
    if not os.environ.get("HYBRID_LLM_NET_GUARD"):
        return
    if importlib.util.find_spec("hybrid_llm") is None:  # a Python outside our environment
        sys.path.append(str(_HERE.parent.parent.parent))
    from hybrid_llm.net.guard import inherit_from_environment

    inherit_from_environment()


def _run_next_sitecustomize() -> None:
    rest = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_guard_child()
_run_next_sitecustomize()
