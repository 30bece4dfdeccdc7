"""Verifier-list data: the record type, loaders (JSONL/parquet), validation, permutation."""
from aletheia_ray.data.records import LETTERS, VerifierList

__all__ = ["LETTERS", "VerifierList"]
