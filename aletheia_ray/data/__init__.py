"""Verifier-list data: the record type, loaders (JSONL/parquet), validation, permutation."""
from aletheia_ray.data.lists import (
    DataError,
    all_pairs,
    iter_rows,
    load_lists,
    pair_preference,
    permute_candidates,
    random_permutation,
    save_lists,
    validate_list,
)
from aletheia_ray.data.records import LETTERS, MAX_CANDIDATES, MIN_CANDIDATES, VerifierList

__all__ = [
    "LETTERS", "MAX_CANDIDATES", "MIN_CANDIDATES", "VerifierList", "DataError", "all_pairs", "iter_rows",
    "load_lists", "pair_preference", "permute_candidates", "random_permutation", "save_lists", "validate_list",
]
