"""An HTTP(S) endpoint as a delivery channel (httpx).

The listing URL returns either JSON (a list of names, or of objects with
``name`` and optionally ``size``, ``sha256``, ``url``, ``modified``; bare or
under a ``files`` key) or an HTML index whose links are the files, as a web
server's folder listing gives.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import replace
from typing import Any, BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from telcoreach.errors import DataSourceError
from telcoreach.fetch._remote import RemoteFile, TransferInterruptedError, matching

__all__ = ["HttpTransport"]

logger = logging.getLogger(__name__)

_HREF = re.compile(r"""href\s*=\s*["']([^"'#?]+)["']""", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class HttpTransport:
    """List and download files over HTTP(S), resuming with Range requests.

    Parameters
    ----------
    listing_url : str
        URL of the JSON listing or HTML index.
    username, password : str or None
        HTTP basic authentication, when the endpoint needs it.
    timeout_s : float
        Connect and read timeout.
    pattern : str
        Names to list; files without a size in the listing get a HEAD
        request, so only the matching ones are asked.
    """

    def __init__(
        self,
        listing_url: str,
        *,
        username: str | None,
        password: str | None,
        timeout_s: float,
        pattern: str = "*",
    ) -> None:
        self.listing_url = listing_url
        self.pattern = pattern
        auth = (username, password or "") if username else None
        self._client = httpx.Client(
            auth=auth,
            timeout=timeout_s,
            follow_redirects=True,
            # Byte ranges must count the bytes as stored, not as re-encoded.
            headers={"Accept-Encoding": "identity"},
        )

    @property
    def _where(self) -> str:
        parts = urlsplit(self.listing_url)
        port = f":{parts.port}" if parts.port else ""
        # Never show a user or password written into the URL.
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in (401, 403):
            raise DataSourceError(
                f"{self._where} refused {what} with HTTP {status}: expected valid "
                "credentials, found them rejected; check fetch.username and the "
                "variable named by fetch.password_env"
            )
        if status in _RETRYABLE_STATUS:
            raise TransferInterruptedError(f"{what}: HTTP {status}")
        raise DataSourceError(
            f"{self._where} answered {what} with HTTP {status}; expected 200, "
            "check fetch.url"
        )

    def list_files(self) -> list[RemoteFile]:
        """Return the files of the listing, sizes asked with HEAD where missing."""
        try:
            response = self._client.get(self.listing_url)
            self._check(response, "the listing")
            entries = self._parse_listing(response)
            offered = [self._remote(entry) for entry in entries]
            # Ask sizes only of the files that will be considered.
            return [
                self._complete(remote) for remote in matching(offered, self.pattern)
            ]
        except httpx.TransportError as error:
            raise TransferInterruptedError(f"{self._where}: {error!r}") from None

    def _parse_listing(self, response: httpx.Response) -> list[dict[str, Any]]:
        text = response.text
        kind = response.headers.get("content-type", "")
        if "json" in kind or text.lstrip().startswith(("[", "{")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataSourceError(
                    f"listing {self._where} is not valid JSON ({error}); expected a "
                    "list of files or an HTML index"
                ) from None
            items = data.get("files") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise DataSourceError(
                    f"listing {self._where}: expected a JSON list of files (or "
                    f"{{'files': [...]}}), found {type(items).__name__}"
                )
            return [self._entry(item) for item in items]
        entries = []
        for href in dict.fromkeys(_HREF.findall(text)):
            if href.endswith("/"):
                continue
            url = urljoin(str(response.url), href)
            entries.append({"name": unquote(posixpath.basename(href)), "url": url})
        return entries

    def _entry(self, item: Any) -> dict[str, Any]:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DataSourceError(
                f"listing {self._where}: expected each file as a name or an object "
                f"with a 'name', found {str(item)[:80]!r}"
            )
        entry = dict(item)
        entry["url"] = urljoin(self.listing_url, item.get("url") or item["name"])
        return entry

    def _remote(self, entry: dict[str, Any]) -> RemoteFile:
        size = entry.get("size")
        version = entry.get("modified") or entry.get("etag")
        sha256 = entry.get("sha256")
        return RemoteFile(
            name=entry["name"],
            size=None if size is None else int(size),
            version=None if version is None else str(version),
            sha256=sha256.lower() if isinstance(sha256, str) else None,
            location=entry["url"],
        )

    def _complete(self, remote: RemoteFile) -> RemoteFile:
        """Return ``remote`` with size and version from a HEAD request if missing."""
        if remote.size is not None:
            return remote
        head = self._client.head(remote.location)
        self._check(head, f"HEAD of {remote.name}")
        length = head.headers.get("content-length")
        version = (
            remote.version
            or head.headers.get("etag")
            or head.headers.get("last-modified")
        )
        return replace(
            remote,
            size=int(length) if length and length.isdigit() else None,
            version=version,
        )

    def download(self, remote: RemoteFile, sink: BinaryIO, offset: int) -> None:
        """Append the file from ``offset`` to ``sink`` (a Range request)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", remote.location, headers=headers) as reply:
                self._check(reply, f"the download of {remote.name}")
                if offset and reply.status_code == 206:
                    self._check_range(reply, offset, remote)
                elif offset:
                    # The server ignored the range: start again from byte 0.
                    logger.info("%s: no range support, restarting", remote.name)
                    sink.seek(0)
                    sink.truncate()
                for block in reply.iter_raw():
                    sink.write(block)
        except httpx.TransportError as error:
            raise TransferInterruptedError(f"{remote.name}: {error!r}") from None

    def _check_range(
        self, reply: httpx.Response, offset: int, remote: RemoteFile
    ) -> None:
        match = _CONTENT_RANGE.match(reply.headers.get("content-range", ""))
        if match is None or int(match.group(1)) != offset:
            raise DataSourceError(
                f"{self._where} answered the range request for {remote.name} from "
                f"byte {offset} with Content-Range "
                f"{reply.headers.get('content-range')!r}; expected 'bytes {offset}-'"
            )

    def reset(self) -> None:
        """httpx reopens dropped connections itself."""

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
