"""Reading a rules file: durations, and YAML nodes with the file line of each mistake."""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Reader", "minutes"]

_DURATION = re.compile(r"(\d+)(m|h|d|w)")
_UNIT_MIN = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def minutes(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text, total, pos = value.strip(), 0, 0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            total += int(m.group(1)) * _UNIT_MIN[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return total
    raise ValueError(f"{value!r} is not a duration (write 15m, 1h, 1d, 2w or 1h30m)")


class Reader:
    """Turns YAML nodes into values, collecting ``file:line: message`` problems."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self._loader = yaml.SafeLoader("")

    def problem(self, node: yaml.Node | int, message: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.problems.append(f"{self.source}:{line}: {message}")

    def value(self, node: yaml.Node) -> Any:
        return self._loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, what: str) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping (key: value lines)")
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                self.problem(key_node, f"{what}: keys must be names, got {key!r}")
            elif key in out:
                self.problem(key_node, f"{what}: {key!r} is given twice")
            else:
                out[key] = value_node
        return out
