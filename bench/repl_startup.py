"""How fast the REPL prompt appears on a terminal (target: under 1.5 s on a 2-core laptop).

Measured on a pseudo-terminal from process start until prompt-toolkit has drawn the prompt and
its toolbar, while the model starts loading in the background. Reported as a ratio against
`hybrid-llm --version` in the same run (the interpreter plus the CLI's own imports), so a busy
machine shows up in both numbers.

    python bench/repl_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.repl.test_cli import time_to_prompt  # noqa: E402 - the same probe the test uses


def version_seconds() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "hybrid_llm", "--version"], check=True, capture_output=True)
    return time.monotonic() - started


def prompt_by_sandbox_setting(home: Path, repo: Path, repeat: int) -> dict[str, float]:
    """Median time to the prompt with `network.sandbox` "off" and "auto", runs interleaved
    (issue 19: the default sandbox and its web broker may slow start-up by at most 10 %)."""
    times: dict[str, list[float]] = {"off": [], "auto": []}
    previous = os.environ.get("HYBRID_LLM_CONFIG")
    try:
        for _ in range(repeat):
            for setting, runs in times.items():
                config = home / f"config-sandbox-{setting}.json"
                config.write_text(json.dumps({"network": {"sandbox": setting}}))
                os.environ["HYBRID_LLM_CONFIG"] = str(config)
                runs.append(time_to_prompt(repo)[0])
    finally:
        os.environ.pop("HYBRID_LLM_CONFIG", None)
        if previous is not None:
            os.environ["HYBRID_LLM_CONFIG"] = previous
    return {setting: statistics.median(runs) for setting, runs in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as repo:
        os.environ["HYBRID_LLM_HOME"] = home
        Path(repo, "util.py").write_text("def greet(name):\n    return f'hi {name}'\n")
        reference = statistics.median(version_seconds() for _ in range(args.repeat))
        prompt = statistics.median(time_to_prompt(Path(repo))[0] for _ in range(args.repeat))
        by_setting = prompt_by_sandbox_setting(Path(home), Path(repo), args.repeat)
    print(f"hybrid-llm --version:  {reference:.2f} s (median of {args.repeat})")
    print(f"REPL prompt on screen: {prompt:.2f} s (median of {args.repeat})")
    print(f"ratio prompt / --version: {prompt / reference:.2f}")
    print(
        f'prompt with network.sandbox "off": {by_setting["off"]:.3f} s, "auto" (sandbox + web '
        f'broker): {by_setting["auto"]:.3f} s; ratio auto / off: '
        f'{by_setting["auto"] / by_setting["off"]:.2f} (target <= 1.1)'
    )
    print(f"target < 1.5 s: {'met' if prompt < 1.5 else 'NOT met'} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
