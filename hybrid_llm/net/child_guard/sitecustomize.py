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
    """Install the guard from this very installation (a `hybrid_llm` elsewhere on the path must
    not stand in for it); a child that cannot install it does not run at all."""
    if not os.environ.get("HYBRID_LLM_NET_GUARD"):
        return
    root = str(_HERE.parent.parent.parent)
    sys.path.insert(0, root)
    try:
        from hybrid_llm.net.guard import inherit_from_environment

        inherit_from_environment()
    except BaseException as exc:  # noqa: BLE001 - any failure here would leave the child online
        sys.stderr.write(
            f"hybrid-llm: this Python child of an offline process could not install the "
            f"network guard ({type(exc).__name__}: {exc}), so it does not run\n"
        )
        os._exit(70)  # EX_SOFTWARE; site.py would report an exception and carry on unguarded
    finally:
        sys.path.remove(root)


def _run_next_sitecustomize() -> None:
    rest = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_guard_child()
_run_next_sitecustomize()
