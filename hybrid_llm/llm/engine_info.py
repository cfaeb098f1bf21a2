"""Which llama.cpp binding this installation uses, and what the CPU offers it.

The compiled `llama-cpp-python` is preferred (native flags, 2-3x faster prefill here); the
prebuilt `xllamacpp` wheel is the fallback where no compiler exists.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

CPU_FEATURES = ("AVX", "AVX2", "AVX512", "AVX512_VNNI", "FMA", "F16C", "NEON", "ARM_FMA")


def active_engine() -> str | None:
    """'llama_cpp' or 'xllamacpp', whichever is importable first, else None."""
    for module in ("llama_cpp", "xllamacpp"):
        if importlib.util.find_spec(module) is not None:
            return module
    return None


def cpu_features() -> list[str]:
    """Features llama.cpp was built to use, read from its own system-info string."""
    if active_engine() != "llama_cpp":
        return []
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    present = set(re.findall(r"(\w+)\s*=\s*1\b", info))
    return [feature for feature in CPU_FEATURES if feature in present]


def describe_engine() -> str | None:
    engine = active_engine()
    if engine is None:
        return None
    distribution = "llama-cpp-python" if engine == "llama_cpp" else "xllamacpp"
    version = importlib.metadata.version(distribution)
    if engine == "xllamacpp":
        return f"xllamacpp {version} (prebuilt, AVX2; serves on a loopback port)"
    features = ", ".join(cpu_features()) or "no SIMD features reported"
    return f"llama-cpp-python {version} (compiled for this CPU: {features})"
