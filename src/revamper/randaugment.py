"""torchvision's RandAugment without the table it rebuilds on every call.

``torchvision.transforms.RandAugment`` builds its table of operations and magnitudes
(``_augmentation_space``: fourteen entries, most of them a ``torch.linspace``) on every call.
That costs about 0.03 ms per image, an eighth of ``RandAugment(2, 9)`` on a 224 px image, and
refurbishing runs RandAugment at every use of a sample (docs/benchmarks.md, section 13e). The
table depends only on the number of magnitude bins and the image size, so :class:`RandAugment`
builds it once per size and otherwise runs torchvision's own code: the same operations, the
same draws from torch's global RNG, identical outputs (tested against torchvision's).
"""

from __future__ import annotations

from typing import Any, Final

from torchvision import transforms as T

MAX_CACHED_SIZES: Final = 64
"""Tables kept per transform; more image sizes than this (RandAugment before a crop, on
images of many sizes) start the cache afresh, so it never grows without bound."""


class RandAugment(T.RandAugment):  # type: ignore[misc]  # torchvision has no type hints
    """``torchvision.transforms.RandAugment`` with its augmentation table built once per size.

    Takes the same arguments and gives the same results as torchvision's class; see the
    module for why it exists. A subclass that overrides ``_augmentation_space`` gets
    torchvision's behaviour (a fresh table on every call) from ``super()``.
    """

    def __prepare_scriptable__(self) -> Any:
        """What ``torch.jit.script`` scripts: torchvision's RandAugment with the same arguments.

        The cache is plain Python, which TorchScript cannot compile.

        Raises:
            TypeError: For a subclass (scripting torchvision's class would drop what the
                subclass changes; it may define ``__prepare_scriptable__`` itself).
        """
        if type(self) is not RandAugment:
            raise TypeError(
                f"torch.jit.script cannot compile {type(self).__qualname__}: it subclasses "
                "revamper.randaugment.RandAugment, whose table cache TorchScript cannot "
                "compile, and scripting torchvision's RandAugment instead would drop the "
                "subclass's changes. Subclass torchvision.transforms.RandAugment to script it, "
                "or define __prepare_scriptable__."
            )
        return T.RandAugment(
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            num_magnitude_bins=self.num_magnitude_bins,
            interpolation=self.interpolation,
            fill=self.fill,
        )

    def _augmentation_space(
        self, num_bins: int, image_size: Any, *more: Any, **options: Any
    ) -> Any:
        if more or options or type(self)._augmentation_space is not _CACHING:
            # A torchvision that passes more than this override knows, or a subclass with its
            # own table (which may edit what it gets here): torchvision's fresh table.
            return super()._augmentation_space(num_bins, image_size, *more, **options)
        key = (num_bins, *(int(side) for side in image_size))
        tables: dict[tuple[int, ...], Any] = self.__dict__.setdefault("_revamper_tables", {})
        table = tables.get(key)
        if table is None:
            if len(tables) >= MAX_CACHED_SIZES:
                tables.clear()
            table = tables[key] = super()._augmentation_space(num_bins, image_size)
        return dict(table)  # the caller's to change, as torchvision's fresh table is


_CACHING: Final = RandAugment._augmentation_space
