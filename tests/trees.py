"""Loading the example trees for tests (plain YAML + pydantic, no lint)."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from streamer.spec.model import Tree

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"


def example(name: str) -> Tree:
    return Tree.model_validate(YAML(typ="safe").load((DEFINITIONS / f"{name}.yaml").read_text()))


def all_examples() -> list[Tree]:
    return [example(p.stem) for p in sorted(DEFINITIONS.glob("*.yaml"))]
