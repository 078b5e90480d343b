"""User-facing errors: one line that says what is wrong and what to do; the CLI exits 2 on them.

And the failures a trial may legitimately have (`TrialError` and its kinds): a candidate the exporter or the
runtime's quantizer refuses, one the device cannot load, run or time, a metric that is not finite on its
outputs, a trial past the time budget. Those fail the trial with their reason and the search goes on; anything
else raised inside a trial is a bug and stops the search (autocompress/search/failures.py).
"""


class AutocompressError(Exception):
    """A user mistake or an unusable environment, reported as one line (never a traceback)."""


class ConfigError(AutocompressError):
    """The experiment config, a CLI flag or a referenced file is invalid."""


class DeviceError(AutocompressError):
    """The requested hardware profile is unknown or not usable here."""


class TrialError(AutocompressError):
    """One candidate could not be built or measured; the trial fails, the study goes on."""


class CandidateRefused(TrialError):
    """The exporter, a converter or the runtime's quantizer refused this candidate."""


class MeasurementFailed(TrialError):
    """The device could not load, run or time this candidate (the runtime raised, the measuring process died or
    did not answer, the remote command timed out)."""


class NonFiniteMetric(TrialError):
    """The metric is NaN or infinite on the runtime's outputs of this candidate."""
