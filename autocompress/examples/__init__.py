"""The built-in examples by name. Kept free of torch so that a mistyped name is refused at once."""

from autocompress.errors import ConfigError

EXAMPLES: dict[str, str] = {
    "digits": "autocompress.examples.digits:load_task",
    "minilm": "autocompress.examples.minilm:load_task",
}


def check_example(name: str) -> None:
    """Refuse an unknown example name before anything heavy is imported or trained."""
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example '{name}': built-in examples are {', '.join(sorted(EXAMPLES))}")
