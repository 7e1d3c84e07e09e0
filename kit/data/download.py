"""Download the real geo-reviews dataset (needs internet).

Two sources hold the same 500,000 reviews (docs/design.md, "The data"):

* ``github``: the original ``geo-reviews-dataset-2023.tskv`` (378,730,064
  bytes) from the Git LFS store of ``yandex/geo-reviews-dataset-2023``. It is
  streamed into ``<name>.part``, resumed with an HTTP ``Range`` request after an
  interruption, and renamed to its final name only once its size and sha256
  match, so a file under the final name is always the verified one.
* ``hub``: the parquet copy ``d0rj/geo-reviews-dataset-2023`` on the Hugging
  Face Hub, loaded with ``datasets`` and written atomically (`kit.data.hub`).

Every failure a user can fix (no network, HTTP errors, a corrupt transfer)
becomes one `UserError` line that points at the synthetic sample as a fallback
(`kit.data.download_messages`, shared by both sources).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from kit.data.download_messages import SAMPLE_HINT, exception_chain, one_line, say
from kit.data.hub import HUB_REPO, download_hub
from kit.errors import UserError

GITHUB_URL = (
    "https://media.githubusercontent.com/media/yandex/geo-reviews-dataset-2023/master/geo-reviews-dataset-2023.tskv"
)
GITHUB_FILENAME = "geo-reviews-dataset-2023.tskv"
GITHUB_SIZE = 378_730_064
GITHUB_SHA256 = "3aa1a838276e23217b14d904f47ab20c753751a48eef8e046d6d671a65098109"
# (connect, read) seconds: a dead host fails fast, a slow LFS server may pause.
TIMEOUT = (15.0, 60.0)
CHUNK_SIZE = 1 << 20


def download(
    source: str,
    out_dir: str | os.PathLike,
    *,
    url: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    repo: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the dataset from `source` ("github" or "hub") into `out_dir`.

    Args:
        source: ``"github"`` for the original .tskv, ``"hub"`` for the parquet.
        out_dir: Directory to write into (created if missing).
        url: github only: a mirror URL instead of the LFS media URL.
        size: github only: expected size in bytes (default: the official file's).
        sha256: github only: expected hex sha256 (default: the official file's).
        repo: hub only: ``OWNER/NAME`` of a dataset instead of the default copy.
        progress: Show a progress bar and status notes on stderr.

    Returns:
        The path of the verified file.

    Raises:
        UserError: Offline, HTTP error, or a file that fails verification.

    Example:
        >>> download("github", "data/raw")  # doctest: +SKIP
        PosixPath('data/raw/geo-reviews-dataset-2023.tskv')
    """
    if source == "github":
        if repo is not None:
            raise UserError(f"repo= applies only to source='hub'. Received: repo={repo!r}")
        # Module constants are read at call time so tests can patch them.
        return fetch_file(
            url or GITHUB_URL,
            Path(out_dir) / GITHUB_FILENAME,
            size=GITHUB_SIZE if size is None else size,
            sha256=GITHUB_SHA256 if sha256 is None else sha256,
            progress=progress,
        )
    if source == "hub":
        if url is not None or size is not None or sha256 is not None:
            raise UserError("--url, --size and --sha256 apply only to --source github. Received: --source hub")
        return download_hub(out_dir, repo_id=repo or HUB_REPO, progress=progress)
    raise UserError(f"Unknown download source. Received: source={source!r}; use 'github' or 'hub'.")


def fetch_file(
    url: str,
    target: str | os.PathLike,
    *,
    size: int | None,
    sha256: str | None,
    progress: bool = True,
    timeout: tuple[float, float] = TIMEOUT,
    chunk_size: int = CHUNK_SIZE,
    retries: int = 3,
    retry_wait_s: float = 2.0,
) -> Path:
    """Stream `url` to `target` via `<target>.part`, resuming and verifying it.

    Args:
        url: HTTP(S) URL of the file.
        target: Final path; it appears only after size and sha256 pass.
        size: Expected size in bytes, or None to skip the size check.
        sha256: Expected lowercase hex sha256, or None to skip the checksum.
        progress: Show a tqdm bar and status notes on stderr.
        timeout: (connect, read) timeouts in seconds.
        chunk_size: Bytes per read.
        retries: Extra attempts after a transfer that broke off mid-way
            (each resumes from the .part); a failure to connect is not retried.
        retry_wait_s: Pause before each retry.

    Returns:
        `target`.

    Raises:
        UserError: Network or HTTP failure, or a size/checksum mismatch (the
            .part is then deleted; after a broken transfer it is kept).

    Example:
        >>> fetch_file("https://example.org/f.bin", "f.bin", size=3, sha256=None)  # doctest: +SKIP
        PosixPath('f.bin')
    """
    import requests

    target = Path(target)
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise UserError(f"--sha256 must be 64 hex digits. Received: {sha256!r}")
    sha256 = sha256.lower() if sha256 else None
    if target.exists():
        _verify(target, url, size, sha256, delete=False)
        say(progress, f"{target} is already downloaded and verified; not fetching it again.")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")

    with requests.Session() as session:
        attempt = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            if size is not None and have > size:
                part.unlink()  # longer than the real file: cannot be a prefix of it
                have = 0
            if size is not None and have == size and have > 0:
                break  # a complete part from an earlier run: just verify it
            reason = _fetch_once(session, url, part, have, size, progress, timeout, chunk_size)
            if reason is None:
                break
            got = part.stat().st_size if part.exists() else 0
            if attempt >= retries or got <= have:  # no progress: retrying will not help
                total = f"{size:,}" if size is not None else "?"
                kept = f"The partial file {part} is kept: run" if got else "Run"
                raise UserError(
                    f"Download of {url} interrupted after {got:,} of {total} bytes "
                    f"({reason}). {kept} the same command again to resume."
                )
            attempt += 1
            say(progress, f"Transfer interrupted ({reason}); resuming (retry {attempt}/{retries}).")
            time.sleep(retry_wait_s)

    _verify(part, url, size, sha256, delete=True)
    with open(part, "rb+") as f:
        os.fsync(f.fileno())  # the bytes are on disk before the name says "done"
    os.replace(part, target)
    return target


def _fetch_once(session, url, part, have, size, progress, timeout, chunk_size) -> str | None:
    """One GET appending to `part`: None when complete, else why it broke off."""
    import requests
    from tqdm import tqdm

    # identity encoding: byte offsets of Range must be offsets in the file itself.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.RequestException as e:
        raise UserError(_network_message(url, e, timeout)) from None
    with resp:
        if resp.status_code == 416 and have:
            return None  # nothing left to send: the part is complete, verify it
        if resp.status_code == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not match or int(match[1]) != have:
                part.unlink(missing_ok=True)  # cannot append a range we did not ask for
                raise UserError(
                    f"Cannot resume {url}: the server sent an unexpected byte range "
                    f"({resp.headers.get('Content-Range')!r}). The partial file was deleted; run again."
                )
            total = None if match[2] == "*" else int(match[2])
            mode = "ab"
        elif resp.status_code == 200:
            have, mode = 0, "wb"  # the server ignored Range: it sends the whole file again
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise UserError(
                f"Cannot download {url}: HTTP {resp.status_code} {resp.reason or ''}".rstrip()
                + f". Check the URL (--url). {SAMPLE_HINT}"
            )
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise UserError(
                f"Size mismatch for {url}: expected {size:,} bytes, the server reports {total:,} "
                "bytes. Check the URL (--url) or the expected --size."
            )
        bar = tqdm(
            total=size or total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name,
            disable=not progress,
            file=sys.stderr,
        )
        try:
            with bar, open(part, mode) as f:
                for chunk in resp.iter_content(chunk_size=chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        ) as e:
            return one_line(e)
        except OSError as e:
            raise UserError(
                f"Cannot write {part}: {e.strerror or e}. Free some disk space or choose another --out."
            ) from None
    # A clean end short of the expected size means the server stopped early
    # without a Content-Length to tell urllib3 so: an interruption too.
    if size is not None and part.stat().st_size < size:
        return "the server closed the connection early"
    return None


def _verify(path: Path, url: str, size: int | None, sha256: str | None, *, delete: bool) -> None:
    """Check size, then sha256; on a mismatch delete `path` (a .part) or ask the user to."""
    got_size = path.stat().st_size
    problem = None
    if size is not None and got_size != size:
        problem = f"Size mismatch for {url}: expected {size:,} bytes, received {got_size:,} bytes"
    elif sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(CHUNK_SIZE):
                digest.update(block)
        if digest.hexdigest() != sha256:
            problem = f"Checksum mismatch for {url}: expected sha256 {sha256}, received {digest.hexdigest()}"
    if problem is None:
        return
    if delete:
        path.unlink(missing_ok=True)
        raise UserError(f"{problem}. The partial download was deleted; run again, or check --url.")
    raise UserError(f"{problem} ({path} exists but is not the expected file). Delete {path} and run again.")


def _network_message(url: str, error: BaseException, timeout: tuple[float, float]) -> str:
    """One line for a failure to reach the server, by cause."""
    import requests

    causes = list(exception_chain(error))
    text = " ".join(str(c) for c in causes)
    if isinstance(error, requests.exceptions.Timeout):
        what = f"timed out (no answer within {timeout[0]:g} s to connect, {timeout[1]:g} s to read)"
    elif any(isinstance(c, socket.gaierror) for c in causes) or "NameResolution" in text or "resolve" in text:
        what = f"no network connection (cannot resolve the host name {urlparse(url).hostname!r})"
    elif any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in text.lower():
        what = "connection refused (nothing answers at that address)"
    elif isinstance(
        error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
    ):
        return f"--url must be an http(s) URL. Received: {url!r}"
    else:
        what = f"no network connection ({one_line(error)})"
    return f"Cannot download {url}: {what}. {SAMPLE_HINT}"
