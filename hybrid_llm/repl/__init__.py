"""The interactive terminal front end: slash commands, input habits, streamed rendering.

`Commands` holds the slash commands (one method each), `Session` what they work on, `ReplIO`
how they talk to the user (`TerminalIO` on a terminal, `PlainIO` from a pipe), and `run_loop`
reads and runs entries until /exit or end of input.
"""

from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.io import PlainIO, ReplIO
from hybrid_llm.repl.loop import run_loop
from hybrid_llm.repl.session import Session

__all__ = ["Commands", "PlainIO", "ReplIO", "Session", "run_loop"]
