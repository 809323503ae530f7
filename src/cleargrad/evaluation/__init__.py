"""Dataset-scale evaluation: explain and score image sets into a resumable results store.

Sits between :mod:`cleargrad.metrics` / the method families and :mod:`cleargrad.cli`
(which parses arguments and prints); it never imports :mod:`cleargrad.cli`. Submodules
are imported on use (``import cleargrad.evaluation`` loads no PyTorch).
"""
