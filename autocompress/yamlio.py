"""YAML as autocompress reads it: safe (plain data only), and a key given twice is an error.

PyYAML's safe loader keeps the last of two equal keys in silence, so `timeout: 8h` further down a config would
quietly undo an earlier `timeout: 1h`. Every YAML the product reads (experiment configs, hardware profiles,
strategies) goes through `load`, which refuses that with the key and both lines.
"""

from __future__ import annotations

from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice; its message is one line (key and both line numbers)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose mappings refuse duplicate keys (`<<` merges may still be overridden, as YAML says)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base constructor says so
                    continue
                if first is not None:
                    where = f"line {line}" if first == line else f"lines {first} and {line}"
                    raise DuplicateKeyError(f"key '{key}' is given twice ({where})")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    """Plain data from YAML text; a duplicated key raises DuplicateKeyError (a yaml.YAMLError)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
