"""Evaluators: accuracy, latency and size of an artifact, always measured in the device's own runtime.

`device/` is the code that runs on the device (shared by local and remote measurement; stdlib, numpy and the
runtime only); `measure.py` feeds it the validation inputs, scores the outputs with the task's metric and adds
the size on disk. This package's own import stays empty, so the runners in `hardware/` can import `device/`
without pulling in the controller side.
"""
