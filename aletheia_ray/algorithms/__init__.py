"""Pure tensor functions for training: advantages, losses (``losses``), the algorithm registry
(``registry``), logprobs and learning-rate schedules. Nothing here imports Ray."""
