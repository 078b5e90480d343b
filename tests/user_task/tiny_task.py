"""A user's own task, as an experiment YAML would reference it: a tiny CNN on 8x8 digits.

Used by the end-to-end tests because it trains in a second; `flaky_accuracy` lets a test inject a
failing trial (its Nth call returns NaN, as a broken artifact would).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

_calls = {"metric": 0}
# Wide enough that its convolutions, not the runtime's per-call overhead, set its latency: halving the channels is
# a clear speedup (about 2.5x in ONNX Runtime), so a search that prunes has a winner to export; at 16 channels the
# halved model timed 0.99x and tests that export were left with nothing.
WIDTH = 64


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, WIDTH, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(WIDTH)
        self.conv2 = nn.Conv2d(WIDTH, WIDTH, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(WIDTH)
        self.fc = nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1.out_channels < WIDTH:  # pruned: $TINY_PRUNED_SECONDS makes its first use that slow (a deadline)
            time.sleep(float(os.environ.pop("TINY_PRUNED_SECONDS", "0")))
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        return self.fc(x.mean(dim=(2, 3)))


def _split() -> dict[str, TensorDataset]:
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    order = np.random.default_rng(0).permutation(len(labels))
    parts = {"train": order[:1000], "calibration": order[1000:1200], "validation": order[1200:]}
    return {name: TensorDataset(images[idx], labels[idx]) for name, idx in parts.items()}


def build_model() -> tuple[nn.Module, torch.Tensor]:
    """Trained for ten quick epochs (a few seconds) so accuracy is meaningful (about 0.84)."""
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(_split()["train"], batch_size=64, shuffle=True)
    for _ in range(10):
        for images, labels in loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), torch.zeros(1, 1, 8, 8)


def loaders() -> dict[str, DataLoader]:
    split = _split()
    return {
        "train": DataLoader(split["train"], batch_size=64, shuffle=True),
        "calibration": DataLoader(split["calibration"], batch_size=50),
        "validation": DataLoader(split["validation"], batch_size=200),
    }


def flaky_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy, except that call number $TINY_FAIL_CALL (1 = the check at load, 2 = the baseline), or every call
    from $TINY_FAIL_FROM on, returns NaN; $TINY_METRIC_SECONDS makes every call that slow, so a test's signal
    lands inside a trial rather than between two."""
    _calls["metric"] += 1
    time.sleep(float(os.environ.get("TINY_METRIC_SECONDS", "0")))
    if str(_calls["metric"]) == os.environ.get("TINY_FAIL_CALL"):
        return float("nan")
    if _calls["metric"] >= int(os.environ.get("TINY_FAIL_FROM") or 10**9):
        return float("nan")
    return float(np.mean(outputs.argmax(axis=1) == labels))


def not_a_model() -> str:
    return "this is not a model"


class _BranchOnData(nn.Module):
    """Branches in Python on a tensor's value: runs eagerly, cannot be exported to a static graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(x).mean(dim=(2, 3))
        if pooled.sum() > 0:
            return self.fc(pooled)
        return -self.fc(pooled)


def unexportable_model() -> tuple[nn.Module, torch.Tensor]:
    return _BranchOnData().eval(), torch.zeros(1, 1, 8, 8)


def broken_model() -> tuple[nn.Module, torch.Tensor]:
    raise RuntimeError("checkpoint tiny.pt not found")


def wrong_input_model() -> tuple[nn.Module, torch.Tensor]:
    """The example input has 3 channels; the model takes 1."""
    return TinyNet().eval(), torch.zeros(1, 3, 8, 8)


def metric_one_argument(outputs: np.ndarray) -> float:
    return float(outputs.mean())


def metric_as_text(outputs: np.ndarray, labels: np.ndarray) -> str:
    return f"{np.mean(outputs.argmax(axis=1) == labels):.1%}"


def generator_loaders() -> dict:
    split = _split()
    return {name: ((x.unsqueeze(0), y.unsqueeze(0)) for x, y in data) for name, data in split.items()}


def float_label_loaders() -> dict:
    split = _split()
    return {name: [(data.tensors[0][:100], data.tensors[1][:100].float())] for name, data in split.items()}


def not_loaders() -> str:
    return "train.csv"
