"""The parameter plan (`dry_run=true`) as a table for the terminal and the README."""

from __future__ import annotations

from typing import Any


def format_plan(plan: dict[str, Any]) -> str:
    """Rows of trainable parameters per module type (and the singular vectors of W its adapters rotate, for
    methods that rotate any: V, W's input side, or U, its output side), then the totals."""
    rows, rotates = plan.get("per_module_type", {}), plan.get("rotates") or {}
    width = max([len(name) for name in rows] + [len("module type")])
    header = f"{'module type':<{width}}  {'modules':>7}  {'trainable':>14}"
    lines = [
        f"parameter plan: model={plan.get('model')} method={plan.get('method', {}).get('name')}",
        header + ("  rotates (singular vectors of W)" if rotates else ""),
    ]
    for name, row in rows.items():
        lines.append(
            f"{name:<{width}}  {row['modules']:>7}  {row['trainable']:>14,}" + (f"  {rotates.get(name, '')}" if rotates else "")
        )
    lines.append(f"{'total trainable':<{width}}  {'':>7}  {plan['trainable']:>14,}  ({plan['trainable'] / 1e6:.2f}M)")
    lines.append(f"{'total parameters':<{width}}  {'':>7}  {plan['total']:>14,}  ({plan['total'] / 1e6:.2f}M)")
    return "\n".join(lines)
