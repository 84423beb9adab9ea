"""Beyond one process: ``torchrun`` + ``torch.distributed`` + torchrec's ``DistributedModelParallel``.

:func:`world_from_env` reads the rank and world size that ``torchrun`` sets and joins the process group
(``gloo`` on CPUs, ``nccl`` on GPUs). :func:`shard` wraps a ranker in ``DistributedModelParallel``: the
tables of its embedding collection are sharded by torchrec's planner (table-wise or column-wise, or as
``--sharding`` says) and trained by an optimiser fused into the backward pass; the dense layers and the
width-1 bias tables stay replicated, their gradients averaged by DDP. Each rank computes its share of
every global batch (:meth:`World.share`), so a step of ``world.size`` ranks is the step of one process
on the whole batch.

Example (inside ``torchrun --nproc_per_node 2``)::

    world = world_from_env("cpu")
    model = shard(Ranker(config, features, levels), world, "adagrad", lr=1e-3, weight_decay=0.0)
    full = full_state(model, world)   # the unsharded state dict, on rank 0
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from data_prep.errors import DataPrepError
from reckd.errors import EveryRankError, ReckdError

__all__ = ["EMBEDDING_OPTIMIZERS", "SHARDINGS", "World", "check_embedding_optimizer", "describe", "full_state",
           "load_sharded", "load_sharded_into", "save_sharded", "shard", "sharded_state", "world_from_env"]

T = TypeVar("T")

# what fbgemm's kernels for sharded tables support (CPU: the exact Adagrad and SGD family; CUDA: Adam too)
EMBEDDING_OPTIMIZERS = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}
CPU_EMBEDDING_OPTIMIZERS = ("adagrad",)
SHARDINGS = ("auto", "table_wise", "column_wise", "table_column_wise", "row_wise")
CPU_SHARDINGS = ("table_wise", "column_wise", "table_column_wise")  # torchrec's CPU sharder offers these


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` ranks (``rank`` 0 writes the shared files)."""

    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, rows: Tensor) -> Tensor:
        """This rank's share of ``rows``: rows ``rank``, ``rank + size``, … (what
        ``load_split(part=(rank, size))`` reads of the training ratings)."""
        return rows[self.rank::self.size]

    def part(self, rows: Tensor) -> Tensor:
        """This rank's contiguous part of ``rows`` (for :meth:`gather`)."""
        return rows.tensor_split(self.size)[self.rank]

    def gather(self, part: Tensor) -> Tensor:
        """Every rank's ``part`` (1-D, lengths may differ by rank), concatenated in rank order, on every rank."""
        sizes = [torch.zeros(1, dtype=torch.long, device=part.device) for _ in range(self.size)]
        dist.all_gather(sizes, torch.tensor([part.numel()], device=part.device))
        longest = int(max(sizes))
        padded = torch.zeros(longest, dtype=part.dtype, device=part.device)
        padded[:part.numel()] = part
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:int(n)] for p, n in zip(parts, sizes)])

    def mean(self, value: Tensor) -> Tensor:
        """The mean of ``value`` over the ranks."""
        value = value.clone()
        dist.all_reduce(value)
        return value / self.size

    def average_gradients(self, parameters: list[Tensor]) -> None:
        """Average over the ranks the gradients of replicated parameters that DDP does not see (a method's
        extras), in one collective."""
        held = [p for p in parameters if p.grad is not None]
        if not held:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in held])
        dist.all_reduce(flat)
        flat /= self.size
        for p, grad in zip(held, flat.split([p.numel() for p in held])):
            p.grad = grad.view_as(p)

    def check_batch(self, batch_size: int) -> None:
        """A global batch must split evenly over the ranks (the same answer on every rank: no collective)."""
        if batch_size % self.size:
            raise EveryRankError(f"--batch-size {batch_size}: expected a global batch that the world size {self.size} "
                                 f"divides")

    def from_main(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0, its result (or its bad-input error, as an EveryRankError) on every rank."""
        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", work())
            except (ReckdError, DataPrepError) as error:
                box[0] = ("error", str(error))
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise EveryRankError(value)
        return value

    def all_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def agree(self, what: str, value: Any) -> None:
        """Stop on every rank unless all ranks see the same ``value`` (e.g. the split's fingerprint)."""
        seen = self.all_objects(value)
        if any(v != seen[0] for v in seen):
            shown = ", ".join(f"rank {r}: {v}" for r, v in enumerate(seen))
            raise EveryRankError(f"{what}: expected the same on every rank, found {shown}; every rank must read the "
                                 f"same files")

    def barrier(self) -> None:
        dist.barrier()


# How long a rank waits in a collective for the others: rank 0 alone writes the teacher's outputs, its test
# metrics and the students' cache, which took over 5 minutes on 25M ratings on a 2-core CPU (README).
WAIT_S = 4 * 3600.0


def world_from_env(device: str = "auto", timeout_s: float = 300.0, wait_s: float = WAIT_S) -> World | None:
    """The world that ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``), its process group joined; ``None`` outside torchrun or with one
    process. The device: the CPU, or ``cuda:LOCAL_RANK`` (``--device auto`` with GPUs, or ``cuda``).
    ``timeout_s``: how long to wait for every rank to join; ``wait_s``: how long a collective then waits
    for the slowest rank (rank 0 works alone between some of them)."""
    from reckd.train.device import resolve_device

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ReckdError(f"WORLD_SIZE={size} but {', '.join(missing)} not set: expected a launch by torchrun "
                         f"(torchrun --nproc_per_node N -m reckd …)")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    on = resolve_device(device)
    if on.type == "cuda":
        on = torch.device("cuda", local)
        torch.cuda.set_device(on)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if on.type == "cuda" else "gloo", rank=rank, world_size=size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError, dist.DistError) as error:
            raise ReckdError(f"rendezvous at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} (rank {rank} of "
                             f"{size}): expected every rank to join within {timeout_s:.0f} s, found: "
                             f"{str(error).splitlines()[0]}") from None
        # the join's timeout also bounds every collective; torchrun has no other way to set the two apart
        dist.distributed_c10d._set_pg_timeout(datetime.timedelta(seconds=wait_s))
    return World(rank, size, on)


def check_embedding_optimizer(name: str) -> None:
    """``--embedding-optimizer`` names one of :data:`EMBEDDING_OPTIMIZERS`."""
    if name not in EMBEDDING_OPTIMIZERS:
        raise ReckdError(f"--embedding-optimizer: expected one of {', '.join(EMBEDDING_OPTIMIZERS)}, found {name!r}")


# ---------------------------------------------------------------- sharding with torchrec
def _sharded_names(model: nn.Module) -> list[str]:
    """The tables the planner shards: those of the ranker's embedding collection (``ebc``). The width-1
    bias tables are left out: fbgemm's sharded kernels need widths divisible by 4."""
    return [config.name for config in model.ebc.embedding_bag_configs()]


def shard(model: nn.Module, world: World, optimizer: str, lr: float, weight_decay: float,
          sharding: str = "auto") -> nn.Module:
    """A copy of ``model`` (a :class:`reckd.models.ranker.Ranker`, initialised the same on every rank) as
    a ``DistributedModelParallel`` over ``world``, its weights unchanged; ``model`` itself stays unsharded
    (torchrec swaps sharded modules into the module it wraps). The embedding tables get
    ``optimizer`` fused into the backward pass; as the sharded lookups sum (not average) the ranks'
    gradients, their weight decay is ``weight_decay × world.size`` — the same step as one process takes
    on the whole batch, for optimisers invariant to the gradient's scale (Adam, Adagrad)."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    cpu = world.device.type == "cpu"
    check_embedding_optimizer(optimizer)
    if cpu and optimizer not in CPU_EMBEDDING_OPTIMIZERS:
        raise EveryRankError(f"--embedding-optimizer {optimizer}: fbgemm's CPU kernels for sharded tables "
                             f"support {', '.join(CPU_EMBEDDING_OPTIMIZERS)} only; pass --embedding-optimizer adagrad "
                             f"(the same flag in one process gives the same model)")
    if sharding not in SHARDINGS:
        raise EveryRankError(f"--sharding: expected one of {', '.join(SHARDINGS)}, found {sharding!r}")
    if cpu and sharding not in ("auto", *CPU_SHARDINGS):
        raise EveryRankError(f"--sharding {sharding}: torchrec shards tables on CPUs {', '.join(CPU_SHARDINGS)} only")
    width = model.config.embedding_dim
    if width % 4:
        raise EveryRankError(f"--embedding-dim {width}: fbgemm's sharded tables need a width divisible by 4")
    model = copy.deepcopy(model)
    full = {k: v.detach().clone() for k, v in model.state_dict().items()}
    apply_optimizer_in_backward(EMBEDDING_OPTIMIZERS[optimizer], model.ebc.parameters(),
                                {"lr": lr, "weight_decay": weight_decay * world.size})
    # data_parallel tables use a lookup without an autograd kernel in fbgemm-gpu-cpu (their gradients
    # are silently dropped), so every table of the collection is sharded. On CPUs ``auto`` is table-wise
    # with the planner placing the tables: offered table- and table-column-wise (equal cost on one
    # node), the planner picked one or the other from one launch to the next (measured), and a resumed
    # run must find the plan it saved
    types = (["table_wise"] if cpu else [s for s in SHARDINGS if s != "auto"]) if sharding == "auto" else [sharding]
    constraints = {name: ParameterConstraints(sharding_types=types) for name in _sharded_names(model)}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world.size, compute_device=world.device.type),
                                       constraints=constraints)
    plan = planner.collective_plan(model, [EmbeddingBagCollectionSharder()], dist.GroupMember.WORLD)
    plan.plan.pop("bias_ebc", None)  # replicated: a plain EmbeddingBagCollection under DDP
    # static_graph=False: with a static graph DDP never averaged the dense gradients here (measured)
    sharded = DistributedModelParallel(model, device=world.device, plan=plan,
                                       data_parallel_wrapper=DefaultDataParallelWrapper(static_graph=False))
    _load_full(sharded, full)
    return sharded


def describe(model: nn.Module, world: World) -> dict:
    """What a sharded checkpoint must match to be loaded back into a sharded model: the world size, the
    plan (``{table: {"sharding": type, "ranks": [...]}}``) and the model's configuration."""
    plan = {f"{module}.{table}": {"sharding": spec.sharding_type, "ranks": spec.ranks}
            for module, tables in model.plan.plan.items() for table, spec in tables.items()}
    config = getattr(model.module, "config", None)
    return {"world_size": world.size, "plan": plan,
            "model": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None}


def _shard_slices(shard) -> tuple[slice, ...]:
    return tuple(slice(o, o + n) for o, n in zip(shard.metadata.shard_offsets, shard.metadata.shard_sizes))


@torch.no_grad()
def _load_full(model: nn.Module, full: dict[str, Tensor]) -> None:
    """Copy an unsharded state dict into a sharded model: each rank its own shards."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    for key, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            for local in value.local_shards():
                local.tensor.copy_(full[key][_shard_slices(local)])
        else:
            value.copy_(full[key])


def full_state(model: nn.Module, world: World) -> dict[str, Tensor] | None:
    """The unsharded state dict of a sharded model on rank 0 (on the CPU; None on the other ranks)."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    out = {}
    for key, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            whole = torch.empty(value.size(), dtype=value.dtype) if world.main else None
            value.gather(dst=0, out=whole)
            out[key] = whole
        else:
            out[key] = value.detach().cpu().clone()
    return out if world.main else None


# ---------------------------------------------------------------- sharded checkpoints
def sharded_state(model: nn.Module, optimizer: bool = False) -> dict:
    """What a sharded checkpoint holds: the model's state dict; with ``optimizer`` (to resume mid-way),
    ``{"model": that, "optimizer": the fused embedding optimiser's state}``."""
    state = model.state_dict()
    return {"model": state, "optimizer": model.fused_optimizer.state_dict()} if optimizer else state


def save_sharded(model: nn.Module, folder: Path, world: World, extra: dict, optimizer: bool = False) -> None:
    """``torch.distributed.checkpoint`` of a sharded model (:func:`sharded_state`) into ``folder`` (each
    rank writes its shards), with ``reckd.json``: :func:`describe` (the plan, world size and model it was
    made with) and ``extra``. Atomic: written beside, then renamed by rank 0."""
    import torch.distributed.checkpoint as dcp

    from reckd.train.io import write_json

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if world.main:
        shutil.rmtree(tmp, ignore_errors=True)
    world.barrier()
    dcp.save(sharded_state(model, optimizer), checkpoint_id=tmp)
    world.barrier()
    if world.main:
        write_json(tmp / "reckd.json", {**describe(model, world), **extra})
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    world.barrier()


def load_sharded(folder: Path, expected: dict | None = None) -> dict[str, Tensor]:
    """A sharded checkpoint as one unsharded state dict, in a single process (no process group needed).
    With ``expected`` (e.g. :func:`describe` of the model to resume), a checkpoint whose ``reckd.json``
    differs on those keys is refused, naming them."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder = Path(folder)
    _check_made_with(folder, expected)
    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(folder, Path(tmp) / "full.pt")
        return torch.load(Path(tmp) / "full.pt", weights_only=True)


def load_sharded_into(state: dict, folder: Path, expected: dict) -> dict:
    """Every rank reads its shards of a sharded checkpoint into ``state`` (:func:`sharded_state` of a model
    sharded like the one saved), in place; refused, on every rank, when its ``reckd.json`` differs from
    ``expected`` (say :func:`describe` and the epoch)."""
    import torch.distributed.checkpoint as dcp

    _check_made_with(Path(folder), expected)
    dcp.load(state, checkpoint_id=folder)
    return state


def _check_made_with(folder: Path, expected: dict | None) -> None:
    """Refuse a folder that is no sharded checkpoint, or whose ``reckd.json`` differs from ``expected`` on
    its keys (naming them)."""
    from reckd.train.io import read_json
    from reckd.train.plan import differences, normal

    if not (folder / ".metadata").is_file():
        raise EveryRankError(f"{folder}: expected a sharded checkpoint (torch.distributed.checkpoint), found no "
                             f".metadata")
    if expected is not None:
        recorded = read_json(folder / "reckd.json", "a sharded checkpoint's description")
        recorded = {k: recorded.get(k, "<absent>") for k in expected}
        if recorded != normal(expected):
            raise EveryRankError(f"{folder}: a sharded checkpoint made with another plan, world size or model: "
                                 f"{'; '.join(differences(recorded, normal(expected)))}")
