"""Where a notebook runs (Kaggle, Colab or local; TPU, GPU or CPU), what to install there, and its secrets.

Detection reads only environment variables and device paths, and this
module imports only the standard library until `hardware_report` runs: a
notebook's setup cell imports it right after finding the kit, before the
kit's dependencies are installed (`setup`).

Example:
    >>> env = detect_environment(environ={"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "TPU_ACCELERATOR_TYPE": "v3-8"},
    ...                          exists=lambda path: False)
    >>> env.platform, env.accelerator, env.extra
    ('kaggle', 'tpu', 'tpu')
"""

from __future__ import annotations

import dataclasses
import os
import re
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


def install_command(env: Environment, project: str | Path = ".", *, missing: bool = False) -> list[str] | None:
    """The pip command that installs the kit: with the host's JAX extra on Kaggle/Colab; locally only
    when something is `missing` (and without an extra: a local GPU's CUDA is the user's choice).

    Example:
        >>> install_command(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True))[-2:]
        ['-e', '.[tpu]']
        >>> install_command(Environment(platform="local", accelerator="cpu", extra=None, hosted=False)) is None
        True
        >>> install_command(Environment(platform="local", accelerator="gpu", extra="cuda", hosted=False),
        ...                 missing=True)[-1]
        '.'
    """
    if not env.hosted and not missing:
        return None
    spec = f"{project}[{env.extra}]" if env.extra and env.hosted else str(project)
    return [sys.executable, "-m", "pip", "install", "-q", "-e", spec]


# What the notebooks use besides the kit's own dependencies (hosted images ship it).
NOTEBOOK_PACKAGES = ("matplotlib",)


def missing_requirements(project: str | Path = ".") -> list[str]:
    """Distributions the kit needs (pyproject's dependencies, plus `NOTEBOOK_PACKAGES`) that are not installed.

    Only presence is checked, so an up-to-date environment never re-installs.

    Example:
        >>> missing_requirements(Path(__file__).resolve().parents[2]) == [] or True
        True
    """
    import importlib.metadata
    import re
    import tomllib

    deps = tomllib.loads((Path(project) / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = []
    for req in deps:
        spec, _, marker = req.partition(";")
        if "platform_system == 'Linux'" in marker and not sys.platform.startswith("linux"):
            continue
        names.append(re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0])
    missing = []
    for name in (*names, *NOTEBOOK_PACKAGES):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def hardware_report() -> list[str]:
    """What the notebook runs on, as lines: JAX's backend and devices (kind, count, memory), CPUs and RAM.

    Example:
        >>> hardware_report()[0].startswith("JAX ")  # doctest: +SKIP
        True
    """
    import jax

    devices = jax.devices()
    kinds: dict[str, int] = {}
    for d in devices:
        kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
    memory = ""
    try:
        limit = (devices[0].memory_stats() or {}).get("bytes_limit")
        memory = f", {limit / 1024**3:.1f} GiB each" if limit else ""
    except Exception:  # CPUs and some plugins have no memory stats
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3 if hasattr(os, "sysconf") else 0
    return [
        f"JAX {jax.__version__} on {jax.default_backend()}: "
        + ", ".join(f"{n} × {kind}" for kind, n in kinds.items())
        + memory,
        f"host: {os.cpu_count()} CPU cores, {ram:.0f} GiB RAM",
    ]


def setup(env: Environment | None = None, project: str | Path = ".", *, run=None) -> Environment:
    """A notebook's setup after the kit is found: say where it runs, install what is missing, show the hardware.

    Args:
        env: The host (default: `detect_environment()`).
        project: The kit's checkout.
        run: Runs the pip command (default `subprocess.run(..., check=True)`; tests pass a fake).

    Returns:
        The detected `Environment`.
    """
    import importlib
    import subprocess

    env = env or detect_environment()
    print("environment:", env.label)
    missing = missing_requirements(project)
    cmd = install_command(env, project, missing=bool(missing))
    if missing and cmd:
        cmd += [p for p in NOTEBOOK_PACKAGES if p in missing]  # not kit dependencies: named on their own
        print(f"installing (missing: {', '.join(missing)}): pip {' '.join(cmd[4:])}")
        (run or (lambda c: subprocess.run(c, check=True)))(cmd)
        importlib.invalidate_caches()  # the new packages import without a kernel restart
    else:
        print("packages: all installed")
    report = hardware_report()
    print(*report, sep="\n")
    if env.accelerator != "cpu" and " on cpu:" in report[0]:
        print(
            f"warning: this host has a {env.accelerator.upper()} but JAX sees only the CPU; install the "
            f"`{env.extra}` extra (pip install -e '.[{env.extra}]') and restart the kernel"
        )
    return env


DRIVE = Path("/content/drive/MyDrive")


def default_runs_dir(env: Environment, fallback: str) -> tuple[str, str | None]:
    """Where runs go on this host, and a note when they would not outlive the session.

    Kaggle keeps `/kaggle/working` (the notebook's output); Colab's disk is
    wiped with the runtime, so a mounted Google Drive is used when there is
    one, and suggested when there is not.

    Example:
        >>> default_runs_dir(Environment(platform="kaggle", accelerator="gpu", extra="cuda", hosted=True), "runs")
        ('/kaggle/working/runs', None)
        >>> default_runs_dir(Environment(platform="local", accelerator="cpu", extra=None, hosted=False), "runs/nb")
        ('runs/nb', None)
    """
    if env.platform == "kaggle":
        return "/kaggle/working/runs", None
    if env.platform == "colab":
        if DRIVE.is_dir():
            return str(DRIVE / "geo-reviews-kit" / "runs"), None
        return fallback, (
            f"Colab wipes {fallback} when the runtime ends. To keep checkpoints across sessions run "
            "`from google.colab import drive; drive.mount('/content/drive')` and set "
            f"RUNS = '{DRIVE}/geo-reviews-kit/runs' in the parameters cell."
        )
    return fallback, None


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


# The kit's own configs dir (the notebooks chdir to the checkout, so paths are given from there).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# A Gemma preset name's family and size: gemma2_2b_en, gemma3_instruct_1b, gemma-3-270m-it, gemma3_4b_text.
_PRESET_NAME = re.compile(r"^(gemma)-?(\d+)[_-](?:instruct[_-])?(\d+(?:\.\d+)?[mb])(?:[_-]|$)")


def preset_size(preset: str) -> tuple[str, str] | None:
    """`(family, size)` of a Gemma preset, from a name, a kaggle:// or hf:// handle or a dir named after one.

    An instruction-tuned preset has its base's size (`gemma3_instruct_1b` is a
    `gemma3` `1b`), so both train with the same config. None when the name
    tells neither.

    Example:
        >>> preset_size("gemma3_instruct_1b"), preset_size("gemma2_2b_en"), preset_size("hf://google/gemma-3-270m-it")
        (('gemma3', '1b'), ('gemma2', '2b'), ('gemma3', '270m'))
        >>> preset_size("kaggle://keras/gemma3/keras/gemma3_4b_text/3"), preset_size("runs/my-base")
        (('gemma3', '4b'), None)
    """
    for part in reversed(preset.removeprefix("kaggle://").removeprefix("hf://").rstrip("/").split("/")):
        m = _PRESET_NAME.match(part.lower())
        if m:
            return f"{m.group(1)}{m.group(2)}", m.group(3)
    return None


def preset_configs(accelerator: str, configs: str | Path = CONFIGS) -> dict[tuple[str, str], str]:
    """The configs for `accelerator` (`configs/*_{accelerator}.toml`) by the `(family, size)` of their `[model] preset`.

    Example:
        >>> preset_configs("gpu")[("gemma3", "1b")]
        'configs/gemma3_1b_gpu.toml'
    """
    import tomllib

    found = {}
    own = Path(configs).resolve() == CONFIGS  # the kit's: named from the checkout's root, as the notebooks run
    for path in sorted(Path(configs).glob(f"*_{accelerator}.toml")):
        with path.open("rb") as f:
            preset = str(tomllib.load(f).get("model", {}).get("preset", ""))
        key = preset_size(preset)
        if key is not None:
            found.setdefault(key, f"configs/{path.name}" if own else str(path))
    return found


def default_config(
    env: Environment, *, smoke: bool = False, preset: str = "gemma2_2b_en", configs: str | Path = CONFIGS
) -> str:
    """The fine-tune config for this host and base model: `configs/tiny.toml` in smoke mode or on
    a CPU, else the TPU or GPU config whose preset has `preset`'s family and size
    (`gemma3_1b` or `gemma3_instruct_1b` on a GPU: `configs/gemma3_1b_gpu.toml`), looked
    for in `configs` (the kit's `configs/`).

    Raises:
        UserError: no config in `configs/` is for that family and size on this accelerator
            (one line, saying how to make one or to set `CONFIG`).

    Example:
        >>> default_config(Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True))
        'configs/gemma2_2b_gpu.toml'
        >>> default_config(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True), preset="gemma3_1b")
        'configs/gemma3_1b_tpu.toml'
        >>> default_config(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True), smoke=True)
        'configs/tiny.toml'
    """
    if smoke or env.accelerator == "cpu":
        return "configs/tiny.toml"
    from kit.errors import UserError

    key = preset_size(preset)
    found = preset_configs(env.accelerator, configs)
    if key in found:
        return found[key]
    have = ", ".join(found.values()) or "none"
    if key is None:
        raise UserError(
            f"The kit cannot tell the family and size of PRESET {preset!r}, so it cannot pick a config: "
            f"set CONFIG to one (the {env.accelerator.upper()} configs: {have})."
        )
    family, size = key
    raise UserError(
        f"No {env.accelerator.upper()} config for {preset!r} ({family} {size}) in configs/ (there: {have}). "
        f"Make one: copy the closest to configs/{family}_{size}_{env.accelerator}.toml, set its [model] preset "
        f'= "{preset}", check it fits with `kit plan --config FILE --device DEVICE`; or set CONFIG to a config file.'
    )
