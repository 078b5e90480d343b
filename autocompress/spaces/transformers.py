"""Pruning hints for Hugging Face BERT-like encoders: whole attention heads, residual stream kept whole."""

from __future__ import annotations

from torch import nn

from autocompress.task import PruneHints


def _attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Self-attention blocks in the HF layout: `query`, `key`, `value` Linears and a `num_attention_heads`."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if all(isinstance(getattr(module, part, None), nn.Linear) for part in ("query", "key", "value"))
        and hasattr(module, "num_attention_heads")
    ]


def _fix_head_counts(model: nn.Module) -> None:
    """After whole heads are removed, the attention module's cached sizes must match its smaller Linears."""
    for _, attention in _attention_modules(model):
        attention.num_attention_heads = attention.query.out_features // attention.attention_head_size
        attention.all_head_size = attention.query.out_features


def hf_attention_hints(model: nn.Module) -> PruneHints:
    """Heads per q/k/v layer, and the layers writing the residual stream (attention output and FFN output
    projections, whose width is the model's hidden size and must not shrink)."""
    num_heads: dict[str, int] = {}
    keep_width: list[str] = []
    modules = dict(model.named_modules())
    for name, attention in _attention_modules(model):
        num_heads.update({f"{name}.{part}": attention.num_attention_heads for part in ("query", "key", "value")})
        block = name.removesuffix(".self")  # HF: <layer>.attention.self -> <layer>.attention
        layer = block.removesuffix(".attention")
        for writer in (f"{block}.output.dense", f"{layer}.output.dense"):
            if isinstance(modules.get(writer), nn.Linear):
                keep_width.append(writer)
    return PruneHints(num_heads=num_heads, keep_width=tuple(keep_width), after_prune=_fix_head_counts)
