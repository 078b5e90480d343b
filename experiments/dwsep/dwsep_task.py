"""A second CNN for issue 14's elastic benchmark, not the built-in example: MobileNet-v1-style depthwise-separable
blocks (a depthwise 3x3 and a pointwise 1x1, each with batch norm and ReLU), trained from scratch on the digits
data with the built-in example's split and input size (32x32), as a user's own model from an experiment YAML.

    python -m experiments.benchmark --config experiments/dwsep/digits-dwsep.yaml --device cpu --budget 5m \\
        --seeds 0,1,2 --methods autocompress,autocompress-elastic
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autocompress.examples.digits import IMAGE_SIZE, data_splits
from autocompress.home import home
from autocompress.task import DataSplits

# (output channels, stride) per depthwise-separable block after a 32-channel stem
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
EPOCHS = 8
MAX_LR = 0.05
SEED = 0
RECIPE = f"dwsep/blocks={BLOCKS}/epochs={EPOCHS}/lr={MAX_LR}/seed={SEED}/v1"


def _conv_bn(channels_in: int, channels_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparableNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = [_conv_bn(1, 32, 3)]
        channels = 32
        for width, stride in BLOCKS:
            layers += [_conv_bn(channels, channels, 3, stride, groups=channels), _conv_bn(channels, width, 1)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _train(model: nn.Module) -> None:
    torch.manual_seed(SEED)
    train = data_splits().train.dataset
    assert isinstance(train, TensorDataset)
    loader = DataLoader(train, batch_size=32, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=MAX_LR, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=MAX_LR, total_steps=EPOCHS * len(loader))
    model.train()
    for _ in range(EPOCHS):
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def build_model() -> tuple[nn.Module, torch.Tensor]:
    """Trained once (the weights kept under $AUTOCOMPRESS_HOME, keyed by the recipe), then loaded."""
    checkpoint = home() / "examples" / f"dwsep-{hashlib.sha256(RECIPE.encode()).hexdigest()[:12]}.pt"
    torch.manual_seed(SEED)
    model = DepthwiseSeparableNet()
    if checkpoint.exists():
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
    else:
        _train(model)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = checkpoint.with_name(f"{checkpoint.name}.{os.getpid()}")
        torch.save(model.state_dict(), partial)
        partial.replace(checkpoint)
    return model.eval(), torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)


def loaders() -> DataSplits:
    """The built-in example's split: train, calibration, validation (the search decides on it) and test."""
    return data_splits()
