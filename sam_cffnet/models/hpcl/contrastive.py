"""Contrastive machinery of HPCL-Net: per-class global queues, the momentum (EMA) update and the InfoNCE loss.

The abstract names "global hyper-pixel-wise sample-pair queues" and a "momentum encoder update scheme"; following
MoCo (He et al., 2020) and pixel-contrast segmentation (Wang et al., 2021), assumed here:

* keys are embeddings of the sampled hyper-pixels computed by a momentum copy of the trainable parts, updated
  ``theta_k <- m * theta_k + (1 - m) * theta_q`` before the keys are computed (:func:`ema_update`);
* one FIFO queue per class keeps the last ``queue_size`` keys of that class across batches (and ranks), as
  module buffers, so checkpoints and DDP carry them (:class:`ClassQueues`);
* loss (:func:`hyperpixel_infonce`), temperature ``tau``:

  - ``positive='class'`` (default, supervised InfoNCE): for a query of class y every stored key of class y (and
    every current key of class y) is a positive, all stored and current keys are the candidates;
    ``L = -mean_p log(exp(q.p / tau) / sum_a exp(q.a / tau))``;
  - ``positive='self'`` (MoCo pairs): the positive is the query's own momentum key, the negatives are the
    stored and current keys of the other class; ``L = -log(exp(q.k / tau) / (exp(q.k / tau) + sum_n exp(q.n / tau)))``.

  Queries without any negative (or positive) available are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ['ClassQueues', 'ema_update', 'gather_keys', 'hyperpixel_infonce']


@torch.no_grad()
def ema_update(pairs: Iterable[tuple[nn.Module, nn.Module]], momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter; buffers are copied.

    Args:
        pairs: (online, target) modules of identical structure.
        momentum: m in [0, 1].
    """
    for online, target in pairs:
        for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
            p_t.mul_(momentum).add_(p_o.detach(), alpha=1.0 - momentum)
        for b_o, b_t in zip(online.buffers(), target.buffers(), strict=True):
            b_t.copy_(b_o)


@torch.no_grad()
def gather_keys(keys: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' keys and labels (rank order), or the inputs when not distributed.

    Ranks may hold different numbers of keys: sizes are exchanged first and the keys padded to the largest.

    Args:
        keys: N x D.
        labels: N int64.

    Returns:
        (sum N) x D keys and (sum N) labels.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys, labels
    world = dist.get_world_size()
    n = torch.tensor([keys.shape[0]], device=keys.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    top = int(max(int(s) for s in sizes))
    pad_k = keys.new_zeros(top, keys.shape[1])
    pad_k[: keys.shape[0]] = keys
    pad_l = labels.new_full((top,), -1)
    pad_l[: labels.shape[0]] = labels
    all_k = [torch.zeros_like(pad_k) for _ in range(world)]
    all_l = [torch.zeros_like(pad_l) for _ in range(world)]
    dist.all_gather(all_k, pad_k)
    dist.all_gather(all_l, pad_l)
    k = torch.cat([t[: int(s)] for t, s in zip(all_k, sizes, strict=True)])
    lab = torch.cat([t[: int(s)] for t, s in zip(all_l, sizes, strict=True)])
    return k, lab


class ClassQueues(nn.Module):
    """One FIFO queue of L2-normalised keys per class, as persistent buffers.

    Buffers: ``keys`` (num_classes x size x dim), ``ptr`` (num_classes; next write position) and ``count``
    (num_classes; filled entries, at most ``size``). Unfilled entries are never used.

    Args:
        num_classes: number of classes (2: background, landslide).
        size: entries per class.
        dim: key dimension.
    """

    keys: Tensor
    ptr: Tensor
    count: Tensor

    def __init__(self, num_classes: int = 2, size: int = 4096, dim: int = 128) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ConfigError(f'queue size and dim must be >= 1, got {size}, {dim}')
        self.num_classes = num_classes
        self.size = size
        self.dim = dim
        self.register_buffer('keys', torch.zeros(num_classes, size, dim))
        self.register_buffer('ptr', torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('count', torch.zeros(num_classes, dtype=torch.long))

    def extra_repr(self) -> str:
        """The queues' sizes, for the module's repr."""
        return f'num_classes={self.num_classes}, size={self.size}, dim={self.dim}'

    @torch.no_grad()
    def push(self, keys: Tensor, labels: Tensor, gather: bool = True) -> None:
        """Enqueue keys (gathered across ranks when ``gather`` and distributed), overwriting the oldest.

        Args:
            keys: N x dim (stored as float32).
            labels: N int64 class indices (other values are ignored).
            gather: collect the keys of all ranks first (every rank then holds the same queues).
        """
        if gather:
            keys, labels = gather_keys(keys.detach(), labels)
        keys = keys.detach().to(self.keys.dtype)
        for c in range(self.num_classes):
            k = keys[labels == c]
            if k.shape[0] == 0:
                continue
            if k.shape[0] > self.size:
                k = k[-self.size :]
            n = k.shape[0]
            start = int(self.ptr[c])
            idx = (start + torch.arange(n, device=k.device)) % self.size
            self.keys[c, idx] = k
            self.ptr[c] = (start + n) % self.size
            self.count[c] = min(self.size, int(self.count[c]) + n)

    def stored(self) -> tuple[Tensor, Tensor]:
        """The filled entries: (M x dim keys, M labels)."""
        parts, labels = [], []
        for c in range(self.num_classes):
            n = int(self.count[c])
            parts.append(self.keys[c, :n])
            labels.append(torch.full((n,), c, dtype=torch.long, device=self.keys.device))
        return torch.cat(parts), torch.cat(labels)


def hyperpixel_infonce(
    queries: Tensor,
    query_labels: Tensor,
    keys: Tensor,
    key_labels: Tensor,
    candidates: Tensor,
    candidate_labels: Tensor,
    temperature: float = 0.1,
    positive: Literal['class', 'self'] = 'class',
) -> Tensor:
    """InfoNCE between query hyper-pixels and the queue (see the module docstring for the two forms).

    Args:
        queries: N x D online embeddings (L2-normalised, with gradients).
        query_labels: N int64.
        keys: N x D momentum embeddings of the same hyper-pixels (no gradients), row i pairs with query i.
        key_labels: N int64 (= query_labels).
        candidates: M x D stored keys (the queue's filled entries).
        candidate_labels: M int64.
        temperature: tau.
        positive: ``'class'`` or ``'self'``.

    Returns:
        Scalar mean loss over the queries that have both a positive and a negative; 0 (still connected to
        ``queries``) when there is none.
    """
    if positive not in ('class', 'self'):
        raise ConfigError(f"positive must be 'class' or 'self', got {positive!r}")
    bank = torch.cat([keys.detach(), candidates.detach()]).to(queries.dtype)
    bank_labels = torch.cat([key_labels, candidate_labels])
    logits = queries @ bank.t() / temperature  # N x (N + M)
    same = query_labels[:, None] == bank_labels[None, :]
    if positive == 'class':
        pos = same
        use = pos.any(1) & (~same).any(1)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        per_query = -(log_prob * pos).sum(1) / pos.sum(1).clamp_min(1)
    else:
        n = queries.shape[0]
        own = torch.zeros_like(same)
        own[torch.arange(n), torch.arange(n)] = True
        allowed = own | ~same
        masked = logits.masked_fill(~allowed, float('-inf'))
        use = (~same).any(1)
        per_query = torch.logsumexp(masked, dim=1) - logits[torch.arange(n), torch.arange(n)]
    if not bool(use.any()):
        return queries.sum() * 0.0
    return per_query[use].mean()
