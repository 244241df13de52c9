"""docs/states.md is generated from the transition tables and must match them."""

from pathlib import Path

from cardkeep.statedoc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "states.md"


def test_state_diagrams_match_the_transition_tables() -> None:
    assert DOC.read_text("utf-8") == render(), "run: python -m cardkeep.statedoc > docs/states.md"
