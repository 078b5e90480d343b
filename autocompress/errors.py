"""User-facing errors: one line that says what is wrong and what to do; the CLI exits 2 on them."""


class AutocompressError(Exception):
    """A user mistake or an unusable environment, reported as one line (never a traceback)."""


class ConfigError(AutocompressError):
    """The experiment config, a CLI flag or a referenced file is invalid."""


class DeviceError(AutocompressError):
    """The requested hardware profile is unknown or not usable here."""


class TrialError(AutocompressError):
    """One candidate could not be built or measured; the trial fails, the study goes on."""
