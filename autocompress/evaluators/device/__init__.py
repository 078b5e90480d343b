"""Code that runs on the device: runtime sessions, latency statistics and the measurement runner.

Self-contained on purpose (standard library, numpy and the runtime package only; relative imports),
so the same files measure in-process here and are copied as-is to a remote device over SSH.
"""
