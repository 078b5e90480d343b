"""A user's own task, as an experiment YAML would reference it: a tiny CNN on 8x8 digits.

Used by the end-to-end tests because it trains in a second; `flaky_accuracy` lets a test inject a
failing trial (its Nth call returns NaN, as a broken artifact would).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
            if os.environ.get("TINY_PRUNED_BUG"):  # a programming error planted in the build of a pruned candidate
                return self.conv3(x)
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
    """Trained for ten quick epochs (a few seconds on a quiet machine) so accuracy is meaningful (about 0.84); the
    weights are kept under $AUTOCOMPRESS_HOME, as a user keeps a checkpoint, so the tests train it once."""
    checkpoint = Path(os.environ.get("AUTOCOMPRESS_HOME", "autocompress-runs")) / f"tiny-task-width{WIDTH}.pt"
    torch.manual_seed(0)
    model = TinyNet()
    if checkpoint.exists():
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
        return model.eval(), torch.zeros(1, 1, 8, 8)
    _train(model)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    partial = checkpoint.with_name(f"{checkpoint.name}.{os.getpid()}")
    torch.save(model.state_dict(), partial)
    partial.replace(checkpoint)  # atomic: a test started meanwhile reads the whole file or trains its own
    return model.eval(), torch.zeros(1, 1, 8, 8)


def _train(model: TinyNet) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(_split()["train"], batch_size=64, shuffle=True)
    for _ in range(10):
        for images, labels in loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


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


# ---- user code that is wrong in ways only running it shows (tests/test_bad_user_code.py) ----


class _Wrapped(nn.Module):
    """The tiny model with its output reshaped by `how` (a dict, a tuple, the batch averaged away)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.net, _ = build_model()
        self.how = how

    def forward(self, x: torch.Tensor):  # noqa: ANN201 - returns what a confused user returns
        logits = self.net(x)
        if self.how == "dict":
            return {"logits": logits, "features": x.mean(dim=(2, 3))}
        if self.how == "tuple":
            return logits, x.mean(dim=(2, 3))
        return logits.mean(dim=0, keepdim=True)  # "batch": one row whatever the batch


def dict_output_model() -> tuple[nn.Module, torch.Tensor]:
    return _Wrapped("dict").eval(), torch.zeros(1, 1, 8, 8)


def tuple_output_model() -> tuple[nn.Module, torch.Tensor]:
    return _Wrapped("tuple").eval(), torch.zeros(1, 1, 8, 8)


def batch_averaging_model() -> tuple[nn.Module, torch.Tensor]:
    return _Wrapped("batch").eval(), torch.zeros(1, 1, 8, 8)


def _lists(transform) -> dict:  # noqa: ANN001 - (inputs, labels) -> (inputs, labels)
    split = _split()
    return {name: [transform(*data.tensors)] for name, data in split.items()}


def float64_loaders() -> dict:
    """Inputs as numpy makes them (float64); the example input is float32."""
    return _lists(lambda x, y: (x.double(), y))


def larger_image_loaders() -> dict:
    """16x16 images: the model pools them away in torch, but the export fixes 8x8."""
    return _lists(lambda x, y: (nn.functional.interpolate(x, size=(16, 16)), y))


def one_hot_label_loaders() -> dict:
    return _lists(lambda x, y: (x, nn.functional.one_hot(y, 10)))


def short_label_loaders() -> dict:
    """One label too few per batch."""
    return _lists(lambda x, y: (x, y[:-1]))


def shifted_label_loaders() -> dict:
    """Classes 1 to 10 (a 1-based labelling) for a model of 10 outputs."""
    return _lists(lambda x, y: (x, y + 1))


class _FailsPartWay:
    """A re-iterable validation loader whose third batch cannot be read (a corrupt file, a missing image)."""

    def __init__(self, data: TensorDataset) -> None:
        self.batches = DataLoader(data, batch_size=100)

    def __iter__(self):  # noqa: ANN204
        for index, batch in enumerate(self.batches):
            if index == 2:
                raise OSError("image 213 cannot be read: truncated file")
            yield batch


def failing_validation_loaders() -> dict:
    split = _split()
    return {"train": DataLoader(split["train"], batch_size=64), "calibration": DataLoader(split["calibration"]),
            "validation": _FailsPartWay(split["validation"])}  # fmt: skip


def metric_raises(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels["label"]))  # as if labels were records


def metric_nan(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs[:, 10:]))  # the mean of an empty slice
