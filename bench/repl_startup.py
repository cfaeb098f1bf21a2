"""How fast the REPL prompt appears on a terminal (target: under 1.5 s on a 2-core laptop).

Measured on a pseudo-terminal from process start until prompt-toolkit has drawn the prompt and
its toolbar, while the model starts loading in the background. Reported as a ratio against
`hybrid-llm --version` in the same run (the interpreter plus the CLI's own imports), so a busy
machine shows up in both numbers.

    python bench/repl_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as repo:
        os.environ["HYBRID_LLM_HOME"] = home
        Path(repo, "util.py").write_text("def greet(name):\n    return f'hi {name}'\n")
        reference = statistics.median(version_seconds() for _ in range(args.repeat))
        prompt = statistics.median(time_to_prompt(Path(repo))[0] for _ in range(args.repeat))
    print(f"hybrid-llm --version:  {reference:.2f} s (median of {args.repeat})")
    print(f"REPL prompt on screen: {prompt:.2f} s (median of {args.repeat})")
    print(f"ratio prompt / --version: {prompt / reference:.2f}")
    print(f"target < 1.5 s: {'met' if prompt < 1.5 else 'NOT met'} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
