"""The downloads of release checks (agent/releases.py), for python-tuf's ngclient. In a
module of its own so that python-tuf and urllib3 load only when a release is fetched:
the daemon keeps every module it imports for its whole life (its idle memory)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import urllib3
from tuf.api import exceptions
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher


class BoundedFetcher(Urllib3Fetcher):
    """ngclient's urllib3 fetcher with a deadline on each whole file (a per-read
    timeout alone lets a byte-a-second server hold the agent for ever), and every
    connection failure reported as a DownloadError (the stock fetcher lets some
    through as other exceptions)."""

    def __init__(self, deadline_s: float, socket_timeout: int, user_agent: str):
        super().__init__(socket_timeout=socket_timeout, app_user_agent=user_agent)
        self.deadline_s = deadline_s

    def _fetch(self, url: str) -> Iterator[bytes]:
        deadline = time.monotonic() + self.deadline_s
        try:
            response = self._proxy_env.request(
                "GET",
                url,
                preload_content=False,
                timeout=urllib3.Timeout(self.socket_timeout),
                retries=False,
            )
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: no answer in time") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        if response.status >= 400:
            response.close()
            raise exceptions.DownloadHTTPError(
                f"HTTP error occurred with status {response.status}", response.status
            )
        return self._bounded(response, deadline, url)

    def _bounded(self, response: Any, deadline: float, url: str) -> Iterator[bytes]:
        try:
            while True:
                # read1: what has arrived (up to a chunk), not a full chunk, so that the
                # deadline is looked at while a slow server trickles.
                chunk = response.read1(self.chunk_size)
                if not chunk:
                    return
                if time.monotonic() > deadline:
                    raise exceptions.SlowRetrievalError(
                        f"{url}: not complete after {self.deadline_s:g} s"
                    )
                yield chunk
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: stalled") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        finally:
            response.release_conn()
