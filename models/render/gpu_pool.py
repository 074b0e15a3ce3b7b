"""Dask clusters for rendering: one single-threaded worker per GPU. No Prefect here.

- `make_cluster()`: with CUDA GPUs visible, dask-cuda's `LocalCUDACluster` (one worker per GPU,
  each pinned by CUDA_VISIBLE_DEVICES) or, where dask-cuda is not installed, the same layout
  built from plain `distributed` Nannies; without GPUs, a `LocalCluster` of CPU workers (2 by
  default, 1 thread each). GPU workers advertise the resource ``{"GPU": 1}``.
- `task_runner_kwargs(settings)`: keyword arguments for prefect-dask's `DaskTaskRunner`: the
  scheduler at ``settings.dask_address`` (a running `dask scheduler` with `dask cuda worker`s,
  possibly on other hosts), or a local cluster from `make_cluster`.

Worker processes keep their module-level pipeline cache for their whole life, so each loads its
model once; host memory limits are off on GPU workers (the model's host copy under CPU offload
is not Dask's data, and a Nanny that restarts a worker over it would reload the model).
"""

from __future__ import annotations

import os
from typing import Any

from soundsight.settings import RenderSettings

__all__ = ["LOCAL_HOST", "make_cluster", "task_runner_kwargs", "tls_problem", "visible_gpus"]


def visible_gpus() -> list[str]:
    """GPU ids this process may use (respects CUDA_VISIBLE_DEVICES); [] without CUDA."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        return []
    if n <= 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:n]
    return [str(i) for i in range(n)]


# A local cluster listens on this machine's loopback only: whoever reaches a Dask scheduler or worker
# runs code in it (LocalCluster and dask-cuda's LocalCUDACluster do this by default; SpecCluster's
# scheduler and nannies would listen on every interface).
LOCAL_HOST = "127.0.0.1"


def _gpu_spec_cluster(gpus: list[str], threads_per_worker: int, dashboard_address: str | None, **kwargs: Any):
    """One Dask worker per GPU without dask-cuda.

    LocalCUDACluster's layout without dask-cuda: one Nanny per GPU with its own
    CUDA_VISIBLE_DEVICES (the chosen GPU first, as dask-cuda orders it).
    """
    from distributed import Nanny, Scheduler, SpecCluster

    memory_limit = kwargs.pop("memory_limit", 0)
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": LOCAL_HOST,
            "dashboard_address": dashboard_address or f"{LOCAL_HOST}:0",
            "dashboard": dashboard_address is not None,
        },
    }
    workers = {}
    for gpu in gpus:
        order = [gpu] + [g for g in gpus if g != gpu]
        workers[f"gpu-{gpu}"] = {
            "cls": Nanny,
            "options": {
                "nthreads": threads_per_worker,
                "resources": {"GPU": 1},
                "memory_limit": memory_limit,
                "env": {"CUDA_VISIBLE_DEVICES": ",".join(order)},
                "name": f"gpu-{gpu}",
                "host": LOCAL_HOST,
                **kwargs,
            },
        }
    return SpecCluster(scheduler=scheduler, workers=workers, name="soundsight-gpu")


def make_cluster(
    kind: str = "auto",
    n_workers: int | None = None,
    gpus: list[str] | None = None,
    threads_per_worker: int = 1,
    dashboard_address: str | None = None,
    use_dask_cuda: bool = True,
    **kwargs: Any,
):
    """A local Dask cluster for rendering.

    kind : 'auto' (GPUs when CUDA sees any), 'cuda' or 'cpu'.
    n_workers : CPU workers (default 2); for GPUs, the first `n_workers` of `gpus`.
    gpus : GPU ids to use (default: all visible).
    Extra keyword arguments go to the cluster (e.g. ``memory_limit``, ``local_directory``).
    """
    if kind not in ("auto", "cuda", "cpu"):
        raise ValueError(f"kind must be auto, cuda or cpu, not {kind!r}")
    if kind != "cpu":
        gpus = list(gpus) if gpus is not None else visible_gpus()
        if n_workers:
            gpus = gpus[:n_workers]
        if not gpus and kind == "cuda":
            raise RuntimeError("no CUDA GPU is visible for a GPU cluster")
    if kind != "cpu" and gpus:
        if use_dask_cuda:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                pass
            else:
                kwargs.setdefault("memory_limit", 0)
                return LocalCUDACluster(
                    CUDA_VISIBLE_DEVICES=gpus,
                    n_workers=len(gpus),
                    threads_per_worker=threads_per_worker,
                    resources={"GPU": 1},
                    dashboard_address=dashboard_address,
                    **kwargs,
                )
        return _gpu_spec_cluster(gpus, threads_per_worker, dashboard_address, **kwargs)

    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers or 2,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=dashboard_address,
        **kwargs,
    )


def task_runner_kwargs(settings: RenderSettings, **cluster_kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for prefect-dask's `DaskTaskRunner`.

    Keyword arguments for ``prefect_dask.DaskTaskRunner``: the scheduler address when
    ``settings.dask_address`` is set, else `make_cluster` with `cluster_kwargs`.
    """
    if settings.dask_address:
        # A tls:// scheduler takes the certificates from Dask's own configuration
        # (distributed.comm.tls.*, e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE): Client reads it.
        return {"address": settings.dask_address}
    return {"cluster_class": make_cluster, "cluster_kwargs": dict(cluster_kwargs)}


def tls_problem(address: str) -> str:
    """Why a client here cannot connect to `address` over TLS ('' when it can, or it is not tls://).

    Dask's TLS is mutual: the client checks the scheduler's certificate against the CA and shows
    its own, both from Dask's configuration (distributed.comm.tls.ca-file, .client.cert, .client.key).
    """
    if not address.startswith("tls://"):
        return ""
    from distributed.security import Security

    security = Security()
    missing = [
        f"DASK_DISTRIBUTED__COMM__TLS__{variable}"
        for variable, value in (
            ("CA_FILE", security.tls_ca_file),
            ("CLIENT__CERT", security.tls_client_cert),
            ("CLIENT__KEY", security.tls_client_key),
        )  # fmt: skip
        if not value
    ]
    if missing:
        return (
            f"{address} needs this client's certificate: set {', '.join(missing)} (or distributed.comm.tls in "
            "Dask's configuration) to the files docs/production.md makes"
        )
    return ""
