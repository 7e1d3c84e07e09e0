"""The dataset's parquet copy on the Hugging Face Hub (`kit data download --source hub`).

``d0rj/geo-reviews-dataset-2023`` holds the same 500,000 reviews as the
original .tskv, with ``rating`` as an int. It is loaded with ``datasets`` and
written atomically as one parquet file. A token from the environment is used
when set and masked in every message; being offline is one `UserError` line.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from kit.data.download_messages import SAMPLE_HINT, exception_chain, one_line, say
from kit.errors import UserError

HUB_REPO = "d0rj/geo-reviews-dataset-2023"
HUB_FILENAME = "geo-reviews-dataset-2023.parquet"
TOKEN_VARS = ("HUGGING_FACE_ACCESS_TOKEN", "HF_TOKEN")
_TRUE = {"1", "true", "yes", "on"}
_NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp"}


def hub_filename(repo_id: str) -> str:
    """The parquet file name for `repo_id`: the default keeps the original's name.

    Example:
        >>> hub_filename("d0rj/geo-reviews-dataset-2023"), hub_filename("me/reviews")
        ('geo-reviews-dataset-2023.parquet', 'me__reviews.parquet')
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise UserError(f"A Hub dataset must be OWNER/NAME (hf://OWNER/NAME). Received: {repo_id!r}")
    return HUB_FILENAME if repo_id == HUB_REPO else repo_id.replace("/", "__") + ".parquet"


def download_hub(out_dir: str | os.PathLike, *, repo_id: str = HUB_REPO, progress: bool = True) -> Path:
    """Load `repo_id` (train split) from the Hugging Face Hub and write it as parquet.

    A token from ``HUGGING_FACE_ACCESS_TOKEN`` or ``HF_TOKEN`` is used when set
    and never appears in a message. An existing file is not fetched again.

    Args:
        out_dir: Directory to write into (created if missing).
        repo_id: Dataset repository on the Hub, ``OWNER/NAME``.
        progress: Show progress bars and status notes on stderr.

    Returns:
        The parquet path (see `hub_filename`).

    Raises:
        UserError: Offline (``HF_HUB_OFFLINE``, no network) or no access.

    Example:
        >>> download_hub("data/raw")  # doctest: +SKIP
        PosixPath('data/raw/geo-reviews-dataset-2023.parquet')
    """
    target = Path(out_dir) / hub_filename(repo_id)
    if target.exists():  # written atomically, so an existing file is a whole one
        say(progress, f"{target} is already downloaded; not fetching it again.")
        return target
    secrets = [os.environ.get(v) for v in TOKEN_VARS]
    token = next((s for s in secrets if s), None)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: checking it here
    # also honours a value set later in the process, and fails without waiting.
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise UserError(
            f"Cannot download {repo_id} from the Hugging Face Hub: offline mode is on "
            f"(HF_HUB_OFFLINE). Unset it to download. {SAMPLE_HINT}"
        )
    import datasets

    from kit.atomic import atomic_path

    bars_were_off = datasets.utils.are_progress_bars_disabled()
    if not progress:
        datasets.utils.disable_progress_bars()  # a global switch: restored below
    try:
        ds = datasets.load_dataset(repo_id, split="train", token=token)
        with atomic_path(target, suffix=".parquet") as tmp:
            ds.to_parquet(str(tmp))
    except Exception as e:
        message = _hub_message(repo_id, e)
        if message is None:
            raise  # unexpected: a traceback (exit 1) helps more than a guess
        raise UserError(_scrub(message, secrets)) from None
    finally:
        if not progress and not bars_were_off:
            datasets.utils.enable_progress_bars()
    return target


def _hub_message(repo_id: str, error: BaseException) -> str | None:
    """One line for a known Hub failure; None for an unexpected one."""
    causes = list(exception_chain(error))
    names = {type(c).__name__ for c in causes}
    if names & {"DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"}:
        return (
            f"Cannot download {repo_id} from the Hugging Face Hub: not found or no access "
            f"({one_line(error)}). Check the name, or set HF_TOKEN if it needs a login."
        )
    # Class names and modules rather than imports: the HTTP stack under
    # huggingface_hub changes between releases (requests, then httpx).
    network = (
        names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}
        or {type(c).__module__.split(".")[0] for c in causes} & _NETWORK_MODULES
        or any(isinstance(c, ConnectionError | TimeoutError | socket.gaierror) for c in causes)
    )
    if network:
        return (
            f"Cannot download {repo_id} from the Hugging Face Hub: no network connection "
            f"({one_line(error)}). {SAMPLE_HINT}"
        )
    return None


def _scrub(text: str, secrets: list[str | None]) -> str:
    """Mask every token value, so an error that echoes a request never leaks one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
