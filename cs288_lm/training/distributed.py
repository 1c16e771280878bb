"""The processes of a DistributedDataParallel run started by torchrun (given).

One process per device; :func:`init_processes` joins the process group (gloo on CPUs, NCCL on
GPUs) and picks the process's device. Without torchrun, there is one process and no group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cs288_lm.training.settings import resolve_device


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); pick the device."""
    if "RANK" not in os.environ:
        return Processes(), resolve_device(device_name)
    processes = Processes(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return processes, device


def peer_failed(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective that failed because another process of the run ended
    (gloo raises a plain RuntimeError naming the closed connection)."""
    message = str(error)
    return isinstance(error, dist.DistError) or "closed by peer" in message or "reset by peer" in message
