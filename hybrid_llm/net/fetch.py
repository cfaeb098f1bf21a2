"""Fetching one web page for `/web`: bounded in time, size and redirects, cached on disk.

A page comes from a host the user never chose (whatever the search engine returned), so every
limit is enforced here rather than trusted to the server: the size cap is counted while the body
streams in (Content-Length may lie or be absent), redirects are followed by hand so a loop is
named as such, and the whole fetch has a deadline, not only each socket read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import httpx

from hybrid_llm.config import WebSettings, hybrid_home
from hybrid_llm.errors import UserError
from hybrid_llm.net import guard

MAX_PAGE_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "hybrid-llm (documentation fetcher)"
ACCEPTED_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w-]+)""", re.IGNORECASE)


class FetchError(UserError):
    """A page that could not be used; the message is one line and names the page."""


@dataclass(frozen=True)
class FetchedPage:
    """A page's decoded body; `url` is where it was finally found, after redirects."""

    url: str
    content_type: str
    text: str


class PageSource(Protocol):
    """Where pages come from when not downloaded here: the web broker, seen from the sandbox."""

    def fetch(self, url: str) -> FetchedPage:
        """The page at `url`; raise UserError with a one-line reason on failure."""
        ...


class PageFetcher:
    """Fetches pages through an httpx client, the injection point for tests and proxies.

    The client's own redirect and timeout settings are overridden per request, so an injected
    client gets the same limits as the one built here.
    """

    def __init__(
        self,
        settings: WebSettings,
        *,
        client: httpx.Client | None = None,
        cache_dir: Path | None = None,
        remote: PageSource | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()  # pages are fetched from several threads at once
        self._cache_dir = cache_dir
        self._remote = remote

    def fetch(self, url: str) -> FetchedPage:
        """The page at `url`, from the cache when fresh; raise FetchError saying what went wrong.

        In the sandbox the download itself is done by the web broker (`remote`); the cache stays
        here, on the assistant's side, so the broker never writes a file.
        """
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        page = self._remote.fetch(url) if self._remote else self.download(url)
        self._cache.put(url, page)
        return page

    @functools.cached_property
    def _cache(self) -> PageCache:
        # Built on first fetch, so the broker, which only downloads, never creates a directory.
        directory = self._cache_dir or hybrid_home() / "web_cache"
        return PageCache(directory, self._settings.cache_ttl_hours)

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()

    def _http(self) -> httpx.Client:
        # Built on first use, after the caller checked the guard; rebuilt when going offline
        # closed the pooled one.
        with self._client_lock:
            if self._owns_client and (self._client is None or self._client.is_closed):
                self._client = httpx.Client(headers={"User-Agent": USER_AGENT})
                # Going offline closes it, dropping kept-alive connections to the web.
                guard.register_http_client(self._client)
            assert self._client is not None
            return self._client

    def download(self, url: str) -> FetchedPage:
        """The page at `url` from its site, with every limit applied and no cache."""
        deadline = time.monotonic() + self._settings.timeout
        timeout = httpx.Timeout(self._settings.timeout)
        client = self._http()
        seen = [url]
        current = url
        try:
            while True:
                request = client.build_request("GET", current, timeout=timeout)
                response = client.send(request, stream=True, follow_redirects=False)
                try:
                    if not response.is_redirect:
                        return _read_page(url, response, deadline)
                    current = str(response.next_request.url) if response.next_request else ""
                finally:
                    response.close()
                if not current:
                    raise FetchError(f"{url}: redirect without a Location")
                if current in seen:
                    raise FetchError(f"{url}: redirect loop ({len(seen)} hops back to {current})")
                seen.append(current)
                if len(seen) > MAX_REDIRECTS + 1:
                    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")
        except httpx.TimeoutException:
            raise FetchError(
                f"{url}: no answer within {self._settings.timeout:g}s (web.timeout)"
            ) from None
        except httpx.ConnectError as exc:
            raise FetchError(f"{url}: cannot connect ({exc})") from None
        except httpx.UnsupportedProtocol:
            raise FetchError(f"{current}: only http and https pages can be fetched") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None


def _read_page(url: str, response: httpx.Response, deadline: float) -> FetchedPage:
    if response.status_code >= 400:
        raise FetchError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
    content_type = response.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in ACCEPTED_TYPES:
        raise FetchError(f"{url}: not a web page ({media_type or 'no content type'})")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
        raise FetchError(
            f"{url}: page too large ({_megabytes(int(declared))}, "
            f"limit {_megabytes(MAX_PAGE_BYTES)})"
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > MAX_PAGE_BYTES:
            raise FetchError(f"{url}: page too large (over {_megabytes(MAX_PAGE_BYTES)})")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("page download exceeded the deadline")
    return FetchedPage(
        url=str(response.url),
        content_type=media_type,
        text=bytes(body).decode(_charset(response, bytes(body[:4096])), errors="replace"),
    )


def _charset(response: httpx.Response, head: bytes) -> str:
    """The header's charset, else the page's <meta charset>, else UTF-8."""
    if response.charset_encoding:
        return _valid_codec(response.charset_encoding)
    match = _META_CHARSET.search(head)
    return _valid_codec(match.group(1).decode("ascii")) if match else "utf-8"


def _valid_codec(name: str) -> str:
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class PageCache:
    """Fetched pages on disk, one JSON file per URL, valid for `ttl_hours` (0 disables it)."""

    def __init__(self, directory: Path, ttl_hours: float) -> None:
        self._directory = directory
        self._ttl_seconds = ttl_hours * 3600

    def get(self, url: str) -> FetchedPage | None:
        if self._ttl_seconds <= 0:
            return None
        path = self._path(url)
        try:
            if time.time() - path.stat().st_mtime > self._ttl_seconds:
                return None
            return FetchedPage(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None  # missing or damaged entries are simply fetched again

    def put(self, url: str, page: FetchedPage) -> None:
        if self._ttl_seconds <= 0:
            return
        self._directory.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash or a parallel fetch never leaves half an entry.
        fd, tmp = tempfile.mkstemp(dir=self._directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(page), handle)
        os.replace(tmp, self._path(url))

    def _path(self, url: str) -> Path:
        return self._directory / f"{hashlib.sha256(url.encode()).hexdigest()}.json"
