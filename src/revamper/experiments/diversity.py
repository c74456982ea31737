"""Measured diversity: how many distinct versions of each sample the model was trained on.

Every input tensor the training loop receives is hashed (its dtype, shape and bytes, with a
64-bit BLAKE2b digest) and the digest is filed under the sample's index. At the end, the number
of distinct digests per index is the number of distinct augmented versions the model saw of that
sample: the number of epochs for standard training with continuous random transforms, about
epochs / r for data echoing, 1 without augmentation, and close to the epochs for refurbishing
when the final part is random enough. This is the measured counterpart of the analysis in
``docs/design.md`` section 4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import torch


def tensor_digest(tensor: torch.Tensor) -> int:
    """A 64-bit digest of a tensor's dtype, shape and values (equal tensors, equal digests)."""
    data = tensor.detach().cpu().contiguous()
    hasher = hashlib.blake2b(digest_size=8)
    hasher.update(f"{data.dtype}{tuple(data.shape)}".encode())
    hasher.update(data.numpy().tobytes() if data.numel() else b"")
    return int.from_bytes(hasher.digest(), "little")


class DiversityCounter:
    """Counts distinct versions per sample index over a training run.

    Args:
        num_samples: Indices run from 0 to ``num_samples - 1``.
    """

    def __init__(self, num_samples: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.num_samples = num_samples
        self._seen: list[set[int]] = [set() for _ in range(num_samples)]
        self._uses: npt.NDArray[np.int64] = np.zeros(num_samples, dtype=np.int64)

    def add(self, indices: Iterable[int] | torch.Tensor, inputs: torch.Tensor) -> None:
        """Record one batch: ``inputs[k]`` is a version of sample ``indices[k]``.

        Raises:
            ValueError: If the lengths differ or an index is out of range.
        """
        index_list = [int(i) for i in indices]
        if len(index_list) != len(inputs):
            raise ValueError(f"{len(index_list)} indices for a batch of {len(inputs)} inputs")
        rows = inputs.detach().cpu()
        for index, row in zip(index_list, rows, strict=True):
            if not 0 <= index < self.num_samples:
                raise ValueError(f"sample index {index} out of range 0..{self.num_samples - 1}")
            self._seen[index].add(tensor_digest(row))
            self._uses[index] += 1

    def versions(self) -> npt.NDArray[np.int64]:
        """Distinct versions seen, per sample index (0 for a sample never seen)."""
        return np.array([len(s) for s in self._seen], dtype=np.int64)

    def uses(self) -> npt.NDArray[np.int64]:
        """Times each sample was seen (distinct or not)."""
        return np.array(self._uses, dtype=np.int64)

    def mean_versions(self) -> float:
        """Mean distinct versions per sample, over the samples seen at least once."""
        versions = self.versions()
        seen = versions[self._uses > 0]
        return float(seen.mean()) if len(seen) else 0.0

    def distinct_fraction(self) -> float:
        """Distinct versions divided by uses, over all samples (1.0: every use was new)."""
        total = int(self._uses.sum())
        return float(self.versions().sum() / total) if total else 0.0
