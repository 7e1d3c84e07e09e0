"""JAX's multi-controller runtime: one Python process per host, one global mesh over all of them.

Every process runs the same program. `initialize` joins them (a TPU pod slice
is detected by JAX itself; elsewhere the environment names the coordinator,
the process count and this process's id, see docs/multihost.md). After that
`keras.distribution.list_devices()` lists the devices of every process, so
the DataParallel/ModelParallel layouts of `kit.model.distribution` span them
all; each process feeds only the rows of each global batch that live on its
own devices (`batch_rows`), and only process 0 writes files (`is_writer`).

Environment (read by `initialize`; `kit launch` sets them for local processes):

- `JAX_COORDINATOR_ADDRESS`: `host:port` of process 0's coordinator.
- `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`: the job size and this process's id.
- `KIT_HEARTBEAT_S`: seconds without a heartbeat after which a process counts
  as lost and the others stop (default 60), so a dead host never leaves the
  rest hanging.
"""

from __future__ import annotations

import os

import numpy as np

import kit  # noqa: F401
from kit.errors import ProcessLost, UserError

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_ID = "JAX_PROCESS_ID"
ENV_HEARTBEAT = "KIT_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 60
_MULTIHOST_ENV = (ENV_ADDRESS, "KERAS_DISTRIBUTION_JOB_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS")


def requested() -> bool:
    """True when the environment describes a multi-process JAX job (TPU pod, GPU cluster, `kit launch`).

    Example:
        >>> isinstance(requested(), bool)
        True
    """
    if any(os.environ.get(k) for k in _MULTIHOST_ENV):
        return True
    # TPU pod slices list every worker; a single-host TPU VM lists one.
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise UserError(f"{name} must be a non-negative integer, received {text!r}.")
    return int(text)


def initialize() -> bool:
    """Join the multi-process job once, when `requested()`; returns whether this is one.

    CPU processes talk through gloo collectives (the only CPU implementation
    that spans processes); TPUs and GPUs use their own interconnect, so the
    setting is harmless there.

    Example:
        >>> initialize()  # a single process: nothing to join
        False
    """
    import jax

    if getattr(initialize, "_done", False):
        return jax.process_count() > 1
    if not requested():
        return False
    heartbeat = _env_int(ENV_HEARTBEAT) or DEFAULT_HEARTBEAT_S
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            num_processes=_env_int(ENV_COUNT),
            process_id=_env_int(ENV_ID),
            heartbeat_timeout_seconds=heartbeat,
            initialization_timeout=max(60, 5 * heartbeat),
        )
    except RuntimeError as e:
        if "already" not in str(e).lower() and "only be called once" not in str(e).lower():
            where = os.environ.get(ENV_ADDRESS)
            raise ProcessLost(f"Could not join the multi-process job ({ENV_ADDRESS}={where}): {e}") from None
    except ValueError as e:  # no coordinator/count/id and not on a detectable cluster
        raise UserError(f"Multi-process job is not fully described: {e}. Set {ENV_COUNT} and {ENV_ID} too.") from None
    initialize._done = True
    if jax.process_count() > 1:
        _agree_on_seed()
    return jax.process_count() > 1


def _agree_on_seed() -> None:
    """Give every process Keras' global seed drawn by process 0.

    Variables are created with random initial values before a preset's weights
    overwrite them; a sharded variable must be created with the same value on
    every process, so their random streams must agree (`keras.distribution.initialize`
    does the same for its own start-up path).
    """
    import keras
    from jax.experimental import multihost_utils

    seed = np.asarray(np.random.default_rng().integers(0, 2**31 - 1), dtype=np.int32)
    keras.utils.set_random_seed(int(multihost_utils.broadcast_one_to_all(seed)))


def process_index() -> int:
    """This process's id (0 on a single host).

    Example:
        >>> process_index()
        0
    """
    import jax

    initialize()  # before JAX's backend starts: joining later is not possible
    return jax.process_index()


def process_count() -> int:
    """How many processes form the job (1 on a single host).

    Example:
        >>> process_count()
        1
    """
    import jax

    initialize()
    return jax.process_count()


def is_writer() -> bool:
    """Whether this process writes run files, logs and progress bars: process 0 only.

    Example:
        >>> is_writer()
        True
    """
    return process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process got here (a no-op on one process), e.g. after process 0 wrote a checkpoint.

    Example:
        >>> barrier("checkpoint-written")
    """
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    try:
        multihost_utils.sync_global_devices(name)
    except Exception as e:  # noqa: BLE001 - XLA raises its own runtime error types
        raise lost(e) from None


def to_numpy(x) -> np.ndarray:
    """The whole value of a (possibly multi-process, sharded) array on this process.

    Every process must call it for the same arrays in the same order when one
    is sharded over processes: the pieces are gathered with a collective.

    Example:
        >>> to_numpy(np.ones(2)).tolist()
        [1.0, 1.0]
    """
    import jax

    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(jax.device_get(x) if isinstance(x, jax.Array) and x.is_fully_addressable else x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def allgather(local: np.ndarray) -> list[np.ndarray]:
    """Every process's `local` int array, in process order (their first axes may differ in length).

    Every process must call it at the same point (a collective). It is meant
    for small arrays, such as the lengths of each process's share of the data.

    Example:
        >>> [a.tolist() for a in allgather(np.array([[3, 1], [5, 2]]))]
        [[[3, 1], [5, 2]]]
    """
    local = np.asarray(local)
    if process_count() == 1:
        return [local]
    from jax.experimental import multihost_utils

    try:
        counts = np.asarray(multihost_utils.process_allgather(np.int32(len(local)))).reshape(-1)
        if not counts.any():  # nothing anywhere (an empty split): no zero-sized collective
            return [local for _ in counts]
        padded = np.zeros((int(counts.max()), *local.shape[1:]), dtype=np.int32)
        padded[: len(local)] = local
        stacked = np.asarray(multihost_utils.process_allgather(padded))  # [processes, most rows, ...]
    except Exception as e:  # noqa: BLE001 - XLA raises its own runtime error types
        raise lost(e) from None
    return [stacked[p, : int(n)].astype(local.dtype) for p, n in enumerate(counts)]


def batch_rows(sharding, batch_size: int) -> range:
    """The rows of a global `[batch_size, ...]` batch that this process feeds under `sharding`.

    With the batch split over every device each process owns a contiguous
    block; when the batch axis is narrower than the process count (a
    ModelParallel mesh such as `batch:1,model:8` over two hosts) several
    processes own the same rows and each feeds them.

    Example:
        >>> batch_rows(None, 8)
        range(0, 8)
    """
    if sharding is None or process_count() == 1:
        return range(batch_size)
    spans = {
        (idx[0].start or 0, batch_size if idx[0].stop is None else idx[0].stop)
        for idx in sharding.addressable_devices_indices_map((batch_size,)).values()
    }
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    covered = np.zeros(batch_size, bool)
    for s, e in spans:
        covered[s:e] = True
    if not covered[lo:hi].all():
        raise UserError(
            f"This process's devices hold rows that are not contiguous in the batch ({sorted(spans)}); "
            "order distribution.mesh so each host's devices sit together on the batch axis."
        )
    return range(lo, hi)


def in_job() -> bool:
    """Whether this process has joined a job of several processes (without starting JAX if not).

    Example:
        >>> in_job()
        False
    """
    if not getattr(initialize, "_done", False):
        return False
    import jax

    return jax.process_count() > 1


def leave(code: int) -> None:
    """End this process of a job now with `code`, skipping JAX's orderly shutdown.

    An orderly exit waits for every other process at a shutdown barrier (up to
    5 minutes) while they may be blocked in a collective waiting for this one.
    Leaving at once lets them notice within the heartbeat timeout instead.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def lost(error: BaseException) -> ProcessLost:
    """The one-line error for a collective that failed because another process went away."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ProcessLost(
        f"Process {process_index()} of {process_count()}: another process of this job stopped "
        f"({first[:200]}). Its own log says why; fix that and rerun (with --resume to continue from "
        "the last checkpoint)."
    )
