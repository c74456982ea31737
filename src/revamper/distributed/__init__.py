"""Distributed training: each rank its share of every epoch, and one cache per machine.

With ``torch.distributed`` initialised (or ``rank`` and ``world_size`` passed), the loader gives
each rank its share of every epoch like ``DistributedSampler``, through the planner
(:mod:`revamper.plan.partition`): every rank gets the same number of samples and batches. The
ranks of one machine form a *cache group* that shares one cache store (``cache_scope="machine"``,
the default), or each rank keeps a private cache (``cache_scope="rank"``).

- :mod:`revamper.distributed.setup`: who is who (:func:`resolve_setup`); which ranks share a
  machine comes from :mod:`revamper.distributed.machines` (an all-gather of host identities)
  unless ``local_world_size`` or ``LOCAL_WORLD_SIZE`` says it.
- :mod:`revamper.distributed.agreement`: the construction-time handshake (one all-gather of a
  fingerprint of the loader's arguments; :class:`DistributedSetupError` on every rank if they
  differ).
- :mod:`revamper.distributed.sharing`: the machine's first rank creates the cache store, the
  others attach to it.
- :mod:`revamper.distributed.epoch_exchange`: with ``reuse_factor="auto"``, every rank's
  measurements to every rank at each epoch boundary, with a bounded wait, so that all ranks
  make the same choice of r.
"""

from revamper.distributed.agreement import agree
from revamper.distributed.epoch_exchange import EpochExchange, EpochExchangeError
from revamper.distributed.setup import CacheScope, DistributedSetup, resolve_setup
from revamper.distributed.sharing import share_store
from revamper.errors import DistributedSetupError

__all__ = [
    "CacheScope",
    "DistributedSetup",
    "DistributedSetupError",
    "EpochExchange",
    "EpochExchangeError",
    "agree",
    "resolve_setup",
    "share_store",
]
