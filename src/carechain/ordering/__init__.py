"""Ordering: turn submitted batches of opaque bytes into one total order."""

from carechain.ordering.abc import OrderedBatch, Orderer
from carechain.ordering.solo import SoloOrderer

__all__ = ["OrderedBatch", "Orderer", "SoloOrderer"]
