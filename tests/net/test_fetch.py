"""Page fetching against real HTTP on 127.0.0.1 (tests/net/local_web.py stands in for the
internet); one test injects an httpx MockTransport client, the way callers plug in their own."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from hybrid_llm.config import WebSettings
from hybrid_llm.net import guard
from hybrid_llm.net.fetch import MAX_REDIRECTS, FetchError, PageFetcher
from tests.net.local_web import SLOW_SECONDS, TRICKLE_SECONDS, LocalSite
from tests.net.local_web import site  # noqa: F401 (fixture)


def fetcher(tmp_path: Path, **settings: float) -> PageFetcher:
    return PageFetcher(WebSettings(**{"timeout": 5, **settings}), cache_dir=tmp_path / "cache")


def test_fetches_an_html_page_and_follows_a_redirect(site: LocalSite, tmp_path: Path) -> None:
    page = fetcher(tmp_path).fetch(site.url("moved"))

    assert page.url == site.url("streaming.html")
    assert page.content_type == "text/html"
    assert "def count_bytes(url: str) -> int:" in page.text


@pytest.mark.parametrize("path", ["huge.html", "huge-chunked.html"])
def test_oversize_page_is_refused(site: LocalSite, tmp_path: Path, path: str) -> None:
    """Refused whether the server declares its size or hides it behind chunked encoding."""
    with pytest.raises(FetchError, match=r"page too large .*2\.0 MB"):
        fetcher(tmp_path).fetch(site.url(path))


def test_non_html_page_is_refused(site: LocalSite, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"manual\.pdf: not a web page \(application/pdf\)"):
        fetcher(tmp_path).fetch(site.url("manual.pdf"))


def test_slow_server_times_out(site: LocalSite, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"slow\.html: no answer within 0\.5s \(web.timeout\)"):
        fetcher(tmp_path, timeout=0.5).fetch(site.url("slow.html"))
    assert time.monotonic() - started < SLOW_SECONDS


def test_trickling_server_hits_the_overall_deadline(site: LocalSite, tmp_path: Path) -> None:
    """Every read succeeds within the timeout, so only a deadline for the whole page stops it."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="no answer within 0.5s"):
        fetcher(tmp_path, timeout=0.5).fetch(site.url("trickle.html"))
    assert time.monotonic() - started < TRICKLE_SECONDS / 2


def test_redirect_loop_is_named(site: LocalSite, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"loop-a: redirect loop"):
        fetcher(tmp_path).fetch(site.url("loop-a"))


def test_redirect_chain_is_cut_at_the_limit(site: LocalSite, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetcher(tmp_path).fetch(site.url("chain/0"))
    chain_requests = sum(n for path, n in site.hits.items() if path.startswith("/chain/"))
    assert chain_requests == MAX_REDIRECTS + 1


def test_http_error_status_is_reported(site: LocalSite, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="nowhere.html: HTTP 404 Not Found"):
        fetcher(tmp_path).fetch(site.url("nowhere.html"))


def test_unreachable_host_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot connect") as caught:
        fetcher(tmp_path).fetch("http://127.0.0.1:9/")  # the discard port: nothing listens
    assert "\n" not in str(caught.value)


def test_page_charset_from_meta_tag(site: LocalSite, tmp_path: Path) -> None:
    assert "Ça marche" in fetcher(tmp_path).fetch(site.url("latin1.html")).text


def test_second_fetch_comes_from_the_disk_cache(site: LocalSite, tmp_path: Path) -> None:
    first = fetcher(tmp_path).fetch(site.url("streaming.html"))
    again = fetcher(tmp_path).fetch(site.url("streaming.html"))  # a new fetcher: proof it's on disk

    assert again == first
    assert site.hits["/streaming.html"] == 1


def test_cache_lives_under_hybrid_home_by_default(site: LocalSite, hybrid_home: Path) -> None:
    PageFetcher(WebSettings()).fetch(site.url("streaming.html"))

    assert len(list((hybrid_home / "web_cache").glob("*.json"))) == 1


def test_expired_cache_entry_is_fetched_again(site: LocalSite, tmp_path: Path) -> None:
    fetcher(tmp_path, cache_ttl_hours=1).fetch(site.url("streaming.html"))
    two_hours_ago = time.time() - 7200
    for entry in (tmp_path / "cache").glob("*.json"):
        os.utime(entry, (two_hours_ago, two_hours_ago))

    fetcher(tmp_path, cache_ttl_hours=1).fetch(site.url("streaming.html"))

    assert site.hits["/streaming.html"] == 2


def test_zero_ttl_disables_the_cache(site: LocalSite, tmp_path: Path) -> None:
    fetcher(tmp_path, cache_ttl_hours=0).fetch(site.url("streaming.html"))
    fetcher(tmp_path, cache_ttl_hours=0).fetch(site.url("streaming.html"))

    assert site.hits["/streaming.html"] == 2
    assert not (tmp_path / "cache").exists()


def test_failures_are_not_cached(site: LocalSite, tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(FetchError):
            fetcher(tmp_path).fetch(site.url("manual.pdf"))
    assert site.hits["/manual.pdf"] == 2


def test_injected_client_gets_the_same_limits(tmp_path: Path) -> None:
    """A caller's client that would follow redirects forever still stops at our limit."""
    seen: list[str] = []

    def endless(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(301, headers={"Location": f"{request.url}x"})

    transport = httpx.MockTransport(endless)
    client = httpx.Client(transport=transport, follow_redirects=True, max_redirects=50)
    page_fetcher = PageFetcher(WebSettings(), client=client, cache_dir=tmp_path)

    with pytest.raises(FetchError, match="more than 5 redirects"):
        page_fetcher.fetch("https://docs.example/a")
    assert len(seen) == MAX_REDIRECTS + 1
    page_fetcher.close()
    assert not client.is_closed  # the caller owns it


def test_going_offline_closes_the_client_and_online_again_rebuilds_it(
    site: LocalSite, tmp_path: Path
) -> None:
    page_fetcher = fetcher(tmp_path, cache_ttl_hours=0)
    page_fetcher.fetch(site.url("streaming.html"))

    with guard.offline_mode(allow_loopback=True):
        pass  # the guard closes registered clients on the way offline

    assert page_fetcher.fetch(site.url("timeouts.html")).text.startswith("<!DOCTYPE html>")
