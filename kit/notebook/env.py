"""Where a notebook runs (Kaggle, Colab or local; TPU, GPU or CPU), what to install there, and its secrets.

Detection reads only environment variables and device paths: nothing here
imports JAX, so it can run before the right JAX wheel is installed.

Example:
    >>> env = detect_environment(environ={"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "TPU_ACCELERATOR_TYPE": "v3-8"},
    ...                          exists=lambda path: False)
    >>> env.platform, env.accelerator, env.extra
    ('kaggle', 'tpu', 'tpu')
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Names the kit reads (kit.model.load_credentials): Hugging Face and Kaggle.
SECRET_NAMES = ("HUGGING_FACE_ACCESS_TOKEN", "HF_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")

_TPU_VARS = ("TPU_NAME", "TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR", "TPU_WORKER_ID", "TPU_CHIPS_PER_HOST_BOUNDS")
_TPU_PATHS = ("/dev/accel0", "/dev/vfio/0")
_GPU_PATHS = ("/dev/nvidia0", "/proc/driver/nvidia/version")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Environment:
    """The notebook's host.

    Attributes:
        platform: `kaggle`, `colab` or `local`.
        accelerator: `tpu`, `gpu` or `cpu` (what the host offers, seen before JAX starts).
        extra: The pyproject extra to install for it (`tpu`, `cuda`), or None for CPU.
        hosted: True on Kaggle/Colab, where the notebook may install packages.
    """

    platform: str
    accelerator: str
    extra: str | None
    hosted: bool

    @property
    def label(self) -> str:
        """One line for a notebook's output, e.g. `colab / gpu (pip extra: cuda)`."""
        return f"{self.platform} / {self.accelerator}" + (f" (pip extra: {self.extra})" if self.extra else "")


def detect_environment(
    environ: Mapping[str, str] | None = None, exists: Callable[[str], bool] | None = None
) -> Environment:
    """Detect Kaggle / Colab / local and TPU / GPU / CPU from environment variables and device files.

    Args:
        environ: Variables to read (default `os.environ`).
        exists: Path test (default `os.path.exists`); tests pass a fake.

    Example:
        >>> detect_environment(environ={"COLAB_RELEASE_TAG": "release-colab_20250101", "COLAB_GPU": "1"},
        ...                    exists=lambda path: False).label
        'colab / gpu (pip extra: cuda)'
        >>> detect_environment(environ={}, exists=lambda path: False).label
        'local / cpu'
    """
    env = os.environ if environ is None else environ
    exists = os.path.exists if exists is None else exists
    if env.get("KAGGLE_KERNEL_RUN_TYPE") or env.get("KAGGLE_URL_BASE") or exists("/kaggle/input"):
        platform = "kaggle"
    elif env.get("COLAB_RELEASE_TAG") or env.get("COLAB_GPU") is not None or exists("/content/sample_data"):
        platform = "colab"
    else:
        platform = "local"
    if any(env.get(v) for v in _TPU_VARS) or any(exists(p) for p in _TPU_PATHS):
        accelerator = "tpu"
    elif (
        env.get("COLAB_GPU") == "1"
        or any(exists(p) for p in _GPU_PATHS)
        or (environ is None and shutil.which("nvidia-smi"))
    ):
        accelerator = "gpu"
    else:
        accelerator = "cpu"
    extra = {"tpu": "tpu", "gpu": "cuda"}.get(accelerator)
    return Environment(platform=platform, accelerator=accelerator, extra=extra, hosted=platform != "local")


def install_command(env: Environment, project: str | Path = ".") -> list[str] | None:
    """The pip command that installs the kit with the right extra on a hosted notebook; None locally.

    Locally the kit is already installed (`make install`), so nothing is run there.

    Example:
        >>> install_command(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True))[-2:]
        ['-e', '.[tpu]']
        >>> install_command(Environment(platform="local", accelerator="cpu", extra=None, hosted=False)) is None
        True
    """
    if not env.hosted:
        return None
    spec = f"{project}[{env.extra}]" if env.extra else str(project)
    return [sys.executable, "-m", "pip", "install", "-q", "-e", spec]


def load_secrets(env: Environment, names: Sequence[str] = SECRET_NAMES) -> list[str]:
    """Copy secrets into `os.environ` (never printed); returns the NAMES that are now set.

    Sources, first hit wins and the environment is never overridden: the
    environment itself; Kaggle secrets (`kaggle_secrets.UserSecretsClient`,
    Add-ons → Secrets); Colab secrets (`google.colab.userdata`, the key icon);
    then a `.env` file in the working directory. A secret that is not attached
    is simply skipped.

    Example:
        >>> load_secrets(Environment(platform="local", accelerator="cpu", extra=None, hosted=False), names=())
        []
    """
    from kit.model.loader import load_credentials

    getter = _secret_getter(env.platform)
    for name in names:
        if os.environ.get(name) or getter is None:
            continue
        try:
            value = getter(name)
        except Exception:  # not attached / no access: both clients raise their own types
            value = None
        if value:
            os.environ[name] = value
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():
        from dotenv import load_dotenv

        load_dotenv(dotenv, override=False)
    load_credentials()  # .env, and HF_TOKEN <-> HUGGING_FACE_ACCESS_TOKEN
    return [name for name in names if os.environ.get(name)]


def _secret_getter(platform: str) -> Callable[[str], str | None] | None:
    try:
        if platform == "kaggle":
            from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]

            return UserSecretsClient().get_secret
        if platform == "colab":
            from google.colab import userdata  # type: ignore[import-not-found]

            return userdata.get
    except ImportError:
        return None
    return None


def default_config(env: Environment, *, smoke: bool = False) -> str:
    """The fine-tune config for this host: `configs/tiny.toml` in smoke mode or on a CPU, else the
    Gemma 2 2B TPU or GPU config.

    Example:
        >>> default_config(Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True))
        'configs/gemma2_2b_gpu.toml'
        >>> default_config(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True), smoke=True)
        'configs/tiny.toml'
    """
    if smoke or env.accelerator == "cpu":
        return "configs/tiny.toml"
    return f"configs/gemma2_2b_{env.accelerator}.toml"
