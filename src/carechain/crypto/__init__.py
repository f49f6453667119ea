"""Hashing, signature schemes (a closed registry), AEAD and the encrypted keystore."""
