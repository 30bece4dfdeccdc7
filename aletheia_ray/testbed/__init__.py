"""Testbed builder: problems + generated candidates -> Aletheia lists, splits, Adv set, DPO pairs."""
