"""The ledger core: transactions, blocks, receipts, state and the block state transition.

Deterministic and framework-free: no I/O, no clock, no randomness. Time enters only as the
block timestamp.
"""
