"""What a repair is: one kind of change made to a legacy config, reported, never silent.

The repairs themselves are made by :func:`kfreeze_tui.core.model.legacy.upgrade.repair_config`
(and, for Windows weight paths, by :mod:`kfreeze_tui.core.model.legacy.weights`); each one is
recorded in a :class:`RepairLog` as it is made and reported as a :class:`Repair`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Repair:
    """One kind of change made to a legacy config, over every layer it applied to.

    Attributes:
        code: a stable tag (``groups``, ``time_major``, ``batch_input_shape`` ...).
        message: what was changed, e.g. ``dropped groups=1 from 17 DepthwiseConv2D layers``.
        layers: the names of the layers changed (empty for a change to the file's layout).
    """

    code: str
    message: str
    layers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "layers": list(self.layers)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repair:
        return cls(str(data["code"]), str(data["message"]), tuple(map(str, data["layers"])))


@dataclass
class RepairLog:
    """Collects repairs as they are made, one entry per (code, layer)."""

    entries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, template: str, class_name: str = "", layer: str = "") -> None:
        """Record one change; ``template`` may name ``{what}`` (the classes changed, counted),
        ``{n}`` and ``{s}`` (how many layers, and a plural ``s``)."""
        self.templates.setdefault(code, template)
        self.entries.setdefault(code, []).append((class_name, layer))

    def repairs(self) -> list[Repair]:
        """One :class:`Repair` per code, in the order the codes were first recorded."""
        found = []
        for code, entries in self.entries.items():
            counts = Counter(class_name for class_name, _ in entries if class_name)
            layers = tuple(dict.fromkeys(layer for _, layer in entries if layer))
            n = len(layers) or len(entries)
            message = self.templates[code].format(
                what=_count_text(counts) if counts else "", n=n, s="" if n == 1 else "s"
            )
            found.append(Repair(code, message, layers))
        return found


def _count_text(counts: Counter[str]) -> str:
    parts = [
        f"{count} {name} layer{'s' if count != 1 else ''}" for name, count in counts.most_common()
    ]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
