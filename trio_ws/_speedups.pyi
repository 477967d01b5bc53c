"""Type stub for the optional C accelerator built from ``_speedups.c``."""

from typing_extensions import Buffer

def apply_mask(data: Buffer, mask: Buffer, /) -> bytes: ...
