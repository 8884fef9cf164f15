"""Scenes over HTTP(S): Cloud-Optimized GeoTIFFs read window by window with range requests (GDAL `/vsicurl/`).

A remote scene is named by its URL. Before it is opened, one HEAD request checks that it answers (a 404 or a
timeout is one line naming the URL) and gives its key: a re-run embeds the scene again only when its `ETag` or
`Last-Modified` changed (`remote_stamp`; local files are keyed by mtime and digest). A GeoTIFF that is not a COG
(no tiles, or no COG layout) would have to be read whole over HTTP: it is refused unless `allow_full_download`, which
downloads it to a temporary file first.
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Any

from ..images import ImageReadError

#: Seconds a remote server has to answer (HEAD, and GDAL's range requests).
HTTP_TIMEOUT = 30.0
_SCHEMES = ("http://", "https://")


class RemoteSceneError(ImageReadError):
    """A remote scene cannot be read: not found, no answer, or not a COG; the message says which and what to do."""


def is_remote(name: str | Any) -> bool:
    """Whether a scene or source name is an HTTP(S) URL."""
    return isinstance(name, str) and name.lower().startswith(_SCHEMES)


def head(url: str, timeout: float | None = None) -> dict[str, str]:
    """The response headers of a HEAD request to `url`; `RemoteSceneError` (one line) on an HTTP error or timeout."""
    timeout = HTTP_TIMEOUT if timeout is None else timeout
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return {key.lower(): value for key, value in response.headers.items()}
    except urllib.error.HTTPError as error:
        raise RemoteSceneError(f"remote scene {url}: HTTP {error.code} {error.reason}") from None
    except TimeoutError:
        raise RemoteSceneError(f"remote scene {url}: no answer within {timeout:g} s (timeout)") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise RemoteSceneError(f"remote scene {url}: no answer within {timeout:g} s (timeout)") from None
        raise RemoteSceneError(f"remote scene {url}: cannot connect ({reason})") from None


def remote_stamp(url: str) -> tuple[int, int, str]:
    """What keys a remote scene (`scenes.py` stores it as its `ItemKey`): its length, its `Last-Modified` time in ns
    (-1 without one) and `etag:<ETag>` (or a digest of the other two headers without one); `RemoteSceneError` when it
    does not answer."""
    headers = head(url)
    modified = headers.get("last-modified")
    mtime_ns = int(email.utils.parsedate_to_datetime(modified).timestamp()) * 1_000_000_000 if modified else -1
    etag = headers.get("etag")
    digest = (f"etag:{etag}" if etag else
              "headers:" + hashlib.blake2b(f"{modified}|{headers.get('content-length')}".encode(), digest_size=16)
              .hexdigest())
    return int(headers.get("content-length", -1)), mtime_ns, digest


def gdal_options(url: str) -> dict[str, Any]:
    """GDAL settings of a remote scene: no directory listing, the timeout, no retries, and a range-read cache that
    is dropped when the scene is closed (a re-run sees the file as it is now)."""
    return {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_TIMEOUT": max(1, round(HTTP_TIMEOUT)),
            "GDAL_HTTP_MAX_RETRY": 0, "CPL_VSIL_CURL_NON_CACHED": f"/vsicurl/{url}"}


def is_cog(dataset: Any) -> bool:
    """Whether an open rasterio dataset is a tiled GeoTIFF with the COG layout (GDAL's `LAYOUT=COG`)."""
    return (dataset.driver == "GTiff" and dataset.profile.get("tiled", False)
            and dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG")


def check_remote(url: str, allow_full_download: bool = False) -> None:
    """Raise `RemoteSceneError` (one line) when `url` does not answer, or is not a COG and not `allow_full_download`."""
    import rasterio

    head(url)
    if allow_full_download:
        return
    try:
        with rasterio.Env(**gdal_options(url)), rasterio.open(url) as dataset:
            cog = is_cog(dataset)
    except rasterio.errors.RasterioError as error:
        raise RemoteSceneError(f"cannot read remote scene {url}: {error}") from None
    if not cog:
        raise RemoteSceneError(not_cog_message(url))


def not_cog_message(url: str) -> str:
    """The one line refusing a remote scene that is not a COG."""
    return (f"remote scene {url} is not a Cloud-Optimized GeoTIFF: window reads would fetch all of it; convert it "
            "(rio cogeo create) or pass --allow-full-download")


def download(url: str) -> str:
    """Copy `url` to a temporary file (the caller deletes it); returns its path."""
    suffix = "." + url.rsplit("?", 1)[0].rsplit(".", 1)[-1][:8] if "." in url.rsplit("/", 1)[-1] else ""
    handle = tempfile.NamedTemporaryFile(prefix="rclip-hf-scene-", suffix=suffix, delete=False)  # noqa: SIM115
    try:
        with handle, urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            shutil.copyfileobj(response, handle)
    except (urllib.error.URLError, OSError) as error:
        raise RemoteSceneError(f"remote scene {url}: download failed ({getattr(error, 'reason', error)})") from None
    return handle.name


__all__ = ["HTTP_TIMEOUT", "RemoteSceneError", "check_remote", "download", "gdal_options", "head", "is_cog",
           "is_remote", "not_cog_message", "remote_stamp"]
