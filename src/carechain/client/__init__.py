"""The Python SDK: build and sign transactions, submit, verify proofs against checkpoints."""
