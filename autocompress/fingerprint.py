"""What pins an artifact to what it was built from: the base model's fingerprint and the versions that build it.

A strategy applied to another model, or rebuilt by another quantizer release, is another artifact: `apply`
refuses the first and names the second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata

import torch
from torch import nn


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's class and every state_dict entry (name, dtype, shape, bytes): 16 hex digits."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def package_versions(import_names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of torch and the given packages (import names; `_` read as `-` where needed)."""
    versions = {}
    for name in ("torch", *import_names):
        for candidate in (name, name.replace("_", "-")):
            try:
                versions[name] = importlib.metadata.version(candidate)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions
