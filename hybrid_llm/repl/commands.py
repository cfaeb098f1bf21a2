"""The slash commands, defined in one place.

As in Aider, each command is a method `cmd_<name>(self, args)` whose docstring is its one-line
help, and `completions_<name>(self, partial)` (when present) completes its argument. The
command list, `/help`, dispatch and tab completion are all derived from those methods, so a new
command is one new method. Handlers stay thin: the work lives in the module that owns it
(`Coder`, `CodeIndex`, `WebResearcher`, the network guard, the request log), reached through
the `Session`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybrid_llm.errors import UserError
from hybrid_llm.repl.codeblocks import extract_code_blocks, unified_diff
from hybrid_llm.repl.io import ReplIO
from hybrid_llm.repl.save_target import SaveTarget
from hybrid_llm.repl.session import Session

COMMAND_PREFIX = "/"
_MAX_PATH_COMPLETIONS = 200
# A first `/index` of more files than this asks first (the count is shown): a typical codebase
# has hundreds to a few thousand, and 20,000 files (~80,000 chunks) take hours to embed on 2
# CPU cores (8.4 chunks/s in the README).
LARGE_CODEBASE_FILES = 20_000


class ExitRepl(Exception):
    """Raised by `/exit`; the loop ends normally."""


class Commands:
    def __init__(self, io: ReplIO, session: Session) -> None:
        self.io = io
        self.session = session

    # -- the command table, derived from the methods ---------------------------------------

    def command_names(self) -> list[str]:
        """Every command as typed, e.g. "/code", in alphabetical order."""
        return sorted(COMMAND_PREFIX + attr[4:] for attr in dir(self) if attr.startswith("cmd_"))

    def help_text(self, name: str) -> str:
        method = getattr(self, f"cmd_{name.lstrip(COMMAND_PREFIX)}")
        return (method.__doc__ or "").strip().splitlines()[0]

    def matching_commands(self, word: str) -> list[str]:
        return [name for name in self.command_names() if name.startswith(word)]

    def argument_completions(self, command: str, partial: str) -> list[str]:
        """Completions for the argument being typed after `command` (a full command name)."""
        method = getattr(self, f"completions_{command.lstrip(COMMAND_PREFIX)}", None)
        if method is None:
            return []
        return [option for option in method(partial) if option.startswith(partial)]

    def resolve(self, word: str) -> str:
        """The command `word` names: itself, or the one command it is a prefix of (Aider-style)."""
        names = self.command_names()
        if word in names:
            return word
        matches = self.matching_commands(word)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UserError(f"ambiguous command {word}: {', '.join(matches)}")
        raise UserError(f"unknown command {word}: type /help for the list")

    def run(self, line: str) -> None:
        """Run one input: a slash command, or plain text continuing the conversation."""
        text = line.strip()
        if not text:
            return
        if not text.startswith(COMMAND_PREFIX):
            self._answer(text)
            return
        word, *rest = text.split(maxsplit=1)
        command = self.resolve(word)
        getattr(self, f"cmd_{command[1:]}")(rest[0].strip() if rest else "")

    # -- commands ----------------------------------------------------------------------------

    def cmd_code(self, args: str) -> None:
        """Write code for TASK using the indexed codebase, then list the sources used."""
        self._answer(_required(args, "/code TASK"))

    def cmd_web(self, args: str) -> None:
        """Answer TASK with web pages found for it next to the local code (needs /offline off)."""
        task = _required(args, "/web TASK")
        self._require_online("/web")
        researcher = self._researcher()
        with self.io.status("searching the web and reading pages…"):
            gathering = researcher.gather(task)
        for error in gathering.errors:
            self.io.tool_warning(error)
        self._answer(task, web_passages=gathering.passages)

    def cmd_search(self, args: str) -> None:
        """Search the web for QUERY and list titles, URLs and snippets (needs /offline off)."""
        query = _required(args, "/search QUERY")
        self._require_online("/search")
        researcher = self._researcher()
        with self.io.status("searching…"):
            results = researcher.search(query)
        from hybrid_llm.net.search import format_search_results

        self.io.tool_output(format_search_results(results))

    def cmd_offline(self, args: str) -> None:
        """Toggle offline mode (or `/offline on|off`); offline, nothing can reach the internet."""
        choice = args.lower()
        if choice not in ("", "on", "off"):
            raise UserError("usage: /offline [on|off]")
        offline = not self.session.is_offline() if not choice else choice == "on"
        self.session.set_offline(offline)
        if offline:
            self.io.tool_output("OFFLINE: network access is blocked; /web and /search are refused.")
        else:
            self.io.tool_output(
                "ONLINE: /web and /search may now reach the internet (only your query text is "
                "sent). Type /offline to block the network again."
            )

    def completions_offline(self, partial: str) -> list[str]:
        return ["on", "off"]

    def cmd_index(self, args: str) -> None:
        """Index or re-index the codebase (or PATH, which becomes the codebase), with progress."""
        if args:
            path = self._path_argument(args).resolve()
            if not self._confirm_codebase(path):
                self.io.tool_output(f"not indexed; the codebase is still {self.session.repo}")
                return
            self.session.set_repo(path)
        summary = self._update_index()
        self.io.tool_output(f"indexed {self.session.repo}: {_describe_summary(summary)}")

    def _confirm_codebase(self, path: Path) -> bool:
        """Refuse `/` and the home directory (`/index ..` climbs there), and ask before a first
        index of a tree bigger than codebases usually are: indexing it would take hours."""
        if path == Path(path.anchor) or path == Path.home().resolve():
            place = "the filesystem root" if path == Path(path.anchor) else "your home directory"
            raise UserError(f"{path} is {place}, not a codebase; give the codebase's directory")
        if not path.is_dir() or self.session.has_index(path):
            return True
        with self.io.status(f"counting the files under {path}…"):
            count = self.session.indexable_file_count(path)
        return count <= LARGE_CODEBASE_FILES or self.io.confirm_ask(
            f"{path} has {count:,} files to index (more than {LARGE_CODEBASE_FILES:,}); index them all?",
            default=False,
        )

    def completions_index(self, partial: str) -> list[str]:
        return self._path_completions(partial, directories_only=True)

    def cmd_model(self, args: str) -> None:
        """Show the models (current one starred), or switch to NAME; it loads in the background."""
        if not args:
            current = self.session.model_name
            for name, description in self.session.available_models():
                marker = "*" if name == current else " "
                self.io.tool_output(f"{marker} {name}  {description}")
            if self.session.model_problem:
                self.io.tool_warning(f"{current} is not loaded: {self.session.model_problem}")
            return
        with self.io.status(f"switching to {args}…"):
            self.session.switch_model(args)
        self.io.tool_output(f"switched to {args}; it loads in the background")

    def completions_model(self, partial: str) -> list[str]:
        return [name for name, _ in self.session.available_models()]

    def cmd_clear(self, args: str) -> None:
        """Forget the conversation so far (the index and settings stay)."""
        self.session.clear()
        self.io.tool_output("conversation cleared")

    def cmd_save(self, args: str) -> None:
        """Write code block N of the last answer to PATH (shows a diff, asks before overwriting)."""
        number, *path_text = args.split(maxsplit=1) or [""]
        if not number.isdigit() or not path_text:
            raise UserError("usage: /save N PATH, e.g. /save 1 src/util.py")
        blocks = extract_code_blocks(self._last_answer().text)
        index = int(number)
        if not 1 <= index <= len(blocks):
            raise UserError(f"the last answer has {len(blocks)} code block(s); N must be 1..{len(blocks)}")
        target = self._path_argument(path_text[0].strip())
        try:
            self._write_with_confirmation(target, blocks[index - 1].text)
        except OSError as exc:  # a bad name, no permission, a full disk: the user can fix it
            raise UserError(f"cannot write {self._display_path(target)}: {exc.strerror or exc}") from None

    def _write_with_confirmation(self, path: Path, new_text: str) -> None:
        """Outside the codebase (after links) and overwriting each need a yes about the real file."""
        target = SaveTarget.resolve(path, self.session.repo)
        shown = self._display_path(target.real)
        if target.real != Path(os.path.normpath(target.typed)):
            shown += f" (through the link {self._display_path(target.typed)})"
        if not target.inside_codebase and not self.io.confirm_ask(
            f"{target.real} is outside the codebase {self.session.repo}; write it there?", default=False
        ):
            self.io.tool_output("not saved")
            return
        existing = target.read_existing()
        if existing is not None:
            if existing.text == new_text:
                self.io.tool_output(f"{shown} already has this content; nothing written")
                return
            if existing.text is None:
                self.io.tool_warning(f"{shown} has {existing.size:,} bytes: too large to show a diff")
            else:
                self.io.show_diff(unified_diff(existing.text, new_text, self._display_path(target.real)))
            if not self.io.confirm_ask(f"Overwrite {shown}?", default=False):
                self.io.tool_output("not saved")
                return
        target.write(new_text)
        self.io.tool_output(f"wrote {shown} ({len(new_text.splitlines())} lines)")

    def completions_save(self, partial: str) -> list[str]:
        if partial.isdigit() or not partial:
            count = len(extract_code_blocks(self.session.last_answer.text)) if self.session.last_answer else 0
            numbers = [str(n) for n in range(1, count + 1)]
            return numbers + ([] if partial else self._path_completions(partial))
        return self._path_completions(partial)

    def cmd_good(self, args: str) -> None:
        """Rate the last answer as good (kept as an example for fine-tuning)."""
        self._rate("good")

    def cmd_bad(self, args: str) -> None:
        """Rate the last answer as bad (left out of fine-tuning)."""
        self._rate("bad")

    def cmd_help(self, args: str) -> None:
        """Show the commands and keys."""
        width = max(len(name) for name in self.command_names())
        lines = [f"{name.ljust(width)}  {self.help_text(name)}" for name in self.command_names()]
        lines += [
            "",
            "Plain text continues the conversation (with retrieval, like /code).",
            "Any unambiguous prefix works: /he is /help. Tab completes commands and paths.",
            "Keys: Alt-Enter or Esc-Enter new line; a line with just { starts a block ended by }; "
            "Ctrl-C stops an answer (or clears the line); Ctrl-D quits.",
        ]
        self.io.tool_output(*lines)

    def cmd_exit(self, args: str) -> None:
        """Leave the REPL (Ctrl-D works too)."""
        raise ExitRepl

    # -- helpers -----------------------------------------------------------------------------

    def _update_index(self) -> Any:
        with self.io.status(f"indexing {self.session.repo}…") as status:
            return self.session.update_index(progress=lambda event: status.update(_describe_progress(event)))

    def _answer(self, request: str, *, web_passages: Sequence = ()) -> None:
        if self.session.config.rag.enabled:
            self._update_index()  # so an answer never cites a file as it was before an edit
        if not self.session.model_ready:
            with self.io.status(f"loading {self.session.model_name}…"):
                self.session.wait_for_model()
        stream = self.io.answer_stream()
        try:
            answer = self.session.ask(request, web_passages=web_passages, on_token=stream.feed)
        finally:
            stream.finish()
        if answer.cancelled:
            self.io.tool_warning("stopped; the partial answer is kept (/save works on it)")
        sources = [source.citation for source in answer.sources] + list(answer.web_sources)
        if sources:
            self.io.tool_output("Sources:", *(f"  {source}" for source in sources))
        if answer.unused_sources:
            from hybrid_llm.coder import NOT_USED_TITLE  # loaded with the answer already

            self.io.tool_output(NOT_USED_TITLE, *(f"  {source.citation}" for source in answer.unused_sources))

    def _require_online(self, command: str) -> None:
        # Checked before any search client is built, so offline nothing network-capable exists.
        if self.session.is_offline():
            raise UserError(f"{command} needs the internet and the assistant is offline; type /offline to go online")

    def _researcher(self) -> Any:
        researcher = self.session.web_researcher()
        notice = researcher.engine_notice()
        if notice:
            self.io.tool_output(notice)
        return researcher

    def _rate(self, label: str) -> None:
        answer = self._last_answer()
        self.session.rate(answer, label)
        self.io.tool_output(f"rated the last answer {label}")

    def _last_answer(self) -> Any:
        if self.session.last_answer is None:
            raise UserError("there is no answer yet: ask with /code TASK first")
        return self.session.last_answer

    def _path_argument(self, text: str) -> Path:
        """A path typed by the user: absolute, ~, or relative to the codebase."""
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else self.session.repo / path

    def _display_path(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.session.repo))
        except ValueError:
            return str(path)

    def _path_completions(self, partial: str, *, directories_only: bool = False) -> list[str]:
        """Entries of the directory `partial` points into, relative to the codebase; hidden
        ones only once a dot is typed, as in a shell."""
        head, _, name = partial.rpartition("/")
        base = self._path_argument(head) if head else self.session.repo
        try:
            entries = sorted(os.scandir(base), key=lambda entry: entry.name)
        except OSError:
            return []
        prefix = f"{head}/" if head else ""
        options = []
        for entry in entries[:_MAX_PATH_COMPLETIONS]:
            is_dir = entry.is_dir()
            if (directories_only and not is_dir) or (entry.name.startswith(".") and not name.startswith(".")):
                continue
            options.append(prefix + entry.name + ("/" if is_dir else ""))
        return options


def _required(args: str, usage: str) -> str:
    if not args:
        raise UserError(f"usage: {usage}")
    return args


def _describe_progress(event: Any) -> str:
    """An `IndexProgress` as one status line, e.g. "embedding 120/400 chunks (3.2 s)"."""
    unit = "chunks" if event.phase == "embedding" else "files"
    count = f" {event.done}/{event.total} {unit}" if event.total else ""
    detail = f": {event.message}" if event.message else ""
    return f"{event.phase}{count} ({event.elapsed:.1f} s){detail}"


def _describe_summary(summary: Any) -> str:
    """An `IndexSummary` in one line; an interrupted update keeps what it finished."""
    parts = [
        f"{summary.files_indexed} files indexed",
        f"{summary.files_unchanged} unchanged",
        f"{summary.files_deleted} deleted",
        f"{summary.chunks} chunks",
    ]
    skipped = sum(summary.files_skipped.values())
    if skipped:
        parts.append(f"{skipped} skipped")
    if summary.secrets_redacted:
        parts.append(f"{summary.secrets_redacted} secrets redacted")
    line = ", ".join(parts) + f" in {summary.seconds:.1f} s"
    if summary.interrupted:
        line += " (interrupted: finished files are kept; /index continues)"
    elif summary.chunks_pending:
        line += f"; keyword search is ready, {summary.chunks_pending} chunks are embedded in the background"
    return line
