"""Reading the YAML files users write (build configs, velocity models).

PyYAML keeps the last of two equal keys in a mapping without a word, so a config whose
``endtime`` (or ``picking:`` section) is given twice builds with whichever came last.
:func:`load_user_yaml` refuses that, naming both lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a user's YAML file holds the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises :class:`DuplicateKeyError` on a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue  # ``<<: *base`` merges: its keys may be given again on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in first_line:
                raise DuplicateKeyError(
                    f"line {line}: key {key!r} given twice (first at line {first_line[key]}); "
                    "YAML would keep only the last"
                )
            first_line.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def load_user_yaml(text: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load``, refusing a key given twice in one mapping.

    Raises:
        yaml.YAMLError: invalid YAML; :class:`DuplicateKeyError` for a repeated key.
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
