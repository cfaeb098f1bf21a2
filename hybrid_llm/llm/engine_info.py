"""Which llama.cpp binding this installation uses, and what the CPU offers it.

The compiled `llama-cpp-python` is preferred (native flags, 2-3x faster prefill here); the
prebuilt `xllamacpp` wheel is the fallback where no compiler exists.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys

CPU_FEATURES = ("AVX", "AVX2", "AVX512", "AVX512_VNNI", "FMA", "F16C", "AMX_INT8", "NEON", "ARM_FMA")


def active_engine() -> str | None:
    """'llama_cpp' or 'xllamacpp', whichever is importable first, else None."""
    for module in ("llama_cpp", "xllamacpp"):
        if importlib.util.find_spec(module) is not None:
            return module
    return None


def installed_system_info() -> tuple[str | None, str]:
    """(llama.cpp's description of the installed build, or None and why not), read in a child
    process: a library built for instructions this CPU lacks may crash whoever loads it."""
    from hybrid_llm.llm.engine_check import describe_exit

    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode(errors='replace'))"
    try:
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "the engine hung while loading its library"
    if child.returncode != 0:
        return None, describe_exit(child.returncode, child.stderr)
    return child.stdout.strip(), ""


def built_features(system_info: str) -> set[str]:
    """Every feature llama.cpp's own system-info string says the build uses (`NAME = 1`)."""
    return set(re.findall(r"(\w+)\s*=\s*1\b", system_info))


def cpu_features(system_info: str) -> list[str]:
    """The CPU features worth showing that the build uses, in a fixed order."""
    present = built_features(system_info)
    return [feature for feature in CPU_FEATURES if feature in present]


def describe_engine() -> str | None:
    engine = active_engine()
    if engine is None:
        return None
    distribution = "llama-cpp-python" if engine == "llama_cpp" else "xllamacpp"
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown: not installed by pip)"
    if engine == "xllamacpp":
        return f"xllamacpp {version} (prebuilt, AVX2; serves on a loopback port)"
    info, error = installed_system_info()
    if info is None:
        return f"llama-cpp-python {version} (its library cannot be loaded: {error})"
    features = ", ".join(cpu_features(info)) or "no SIMD features reported"
    return f"llama-cpp-python {version} (built for: {features})"
