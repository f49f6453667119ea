"""The node: mempool, signature pipeline, block production, commit, queries."""
