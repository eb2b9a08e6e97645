"""Field paths in Kubernetes' notation: ``spec.containers[0].env[2].name``, ``metadata.labels[app]``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Key:
    """A key of a map field (``labels``, ``data``): written ``[key]`` rather than ``.key``."""

    name: str


Segment = str | int | Key
Path = tuple[Segment, ...]


def format_path(path: Path) -> str:
    """Render a path as Kubernetes does in its validation messages."""
    out: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif isinstance(segment, Key):
            out.append(f"[{segment.name}]")
        else:
            out.append(f".{segment}" if out else segment)
    return "".join(out)


def raw_segments(path: Path) -> tuple[str | int, ...]:
    """The path as plain keys and indexes, to look up positions in the parsed document."""
    return tuple(s.name if isinstance(s, Key) else s for s in path)
