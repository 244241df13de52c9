"""Renders docs/states.md from the TRANSITIONS tables: ``python -m cardkeep.statedoc``.

A unit test fails when the committed document and the tables disagree.
"""

from __future__ import annotations

from enum import Enum

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import refund as rm
from cardkeep.domain import setup_intent as sim

_INTERNAL = {sim.Status.CHARGE_HELD: "Authorized", pim.Status.CHARGING: "Created"}


def _diagram(title: str, table: dict[tuple[Enum, Enum], Enum]) -> str:
    lines = [f"## {title}", "", "```mermaid", "stateDiagram-v2"]
    for (src, event), dst in table.items():
        lines.append(f"    {src.value} --> {dst.value}: {event.value}")
    lines.append("```")
    sources = {src for src, _ in table}
    for status, shown in _INTERNAL.items():
        if status in sources:
            lines.append(f"\n`{status.value}` is internal: reads show it as `{shown}`.")
    return "\n".join(lines) + "\n"


def render() -> str:
    head = (
        "# State machines\n\nGenerated from the TRANSITIONS tables in `src/cardkeep/domain/` by "
        "`python -m cardkeep.statedoc > docs/states.md`; a test keeps them equal.\n\n"
    )
    return (
        head
        + _diagram("Setup intent", dict(sim.TRANSITIONS))  # type: ignore[arg-type]
        + "\n"
        + _diagram("Payment intent", dict(pim.TRANSITIONS))  # type: ignore[arg-type]
        + "\n"
        + _diagram("Refund or reversal", dict(rm.TRANSITIONS))  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    print(render(), end="")
