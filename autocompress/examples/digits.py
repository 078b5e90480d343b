"""Built-in example `digits`: a small ResNet on scikit-learn's handwritten digits, trained once and cached.

The data ships with scikit-learn (no download). Images are upsampled from 8x8 to 32x32 so the network
does enough work per image that compression changes are measurable in milliseconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from autocompress.examples.digits_model import DigitsResNet
from autocompress.home import home
from autocompress.signals import raise_if_interrupted
from autocompress.task import DataSplits, Task, accuracy

log = logging.getLogger(__name__)

IMAGE_SIZE = 32
WIDTHS = (32, 64, 128)
EPOCHS = 8
BATCH_SIZE = 32  # 50% of the images for training: 8 epochs of 32 reach 99.8% train, 98.6% validation
MAX_LR = 0.05
SEED = 0
TRAINING_RECIPE = (f"digits-resnet/widths={WIDTHS}/epochs={EPOCHS}/batch={BATCH_SIZE}/lr={MAX_LR}/size={IMAGE_SIZE}/"
                   f"seed={SEED}/train=0.5/v3")


def _tensors() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed stratified split: 50% train, 10% calibration, 20% validation (what the search decides on), 20% test
    (held out: scored once, for the confirmed candidates)."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = (images - 0.3) / 0.4
    labels = torch.tensor(digits.target, dtype=torch.long)
    indices = np.arange(len(labels))
    train_idx, rest_idx = train_test_split(indices, train_size=0.5, stratify=digits.target, random_state=SEED)
    calib_idx, held_idx = train_test_split(
        rest_idx, train_size=0.2, stratify=digits.target[rest_idx], random_state=SEED
    )
    val_idx, test_idx = train_test_split(
        held_idx, train_size=0.5, stratify=digits.target[held_idx], random_state=SEED
    )
    splits = (("train", train_idx), ("calibration", calib_idx), ("validation", val_idx), ("test", test_idx))
    return {name: (images[idx], labels[idx]) for name, idx in splits}


def data_splits(batch_size: int = 32) -> DataSplits:
    """Loaders over the fixed split; the train loader shuffles from torch's global RNG, which callers seed."""
    tensors = _tensors()
    train = DataLoader(TensorDataset(*tensors["train"]), batch_size=batch_size, shuffle=True)
    calibration = DataLoader(TensorDataset(*tensors["calibration"]), batch_size=batch_size)
    validation = DataLoader(TensorDataset(*tensors["validation"]), batch_size=256)
    test = DataLoader(TensorDataset(*tensors["test"]), batch_size=256)
    return DataSplits(train=train, calibration=calibration, validation=validation, test=test)


def _train() -> DigitsResNet:
    torch.manual_seed(SEED)
    model = DigitsResNet(WIDTHS)
    loader = DataLoader(TensorDataset(*_tensors()["train"]), batch_size=BATCH_SIZE, shuffle=True)
    steps = EPOCHS * len(loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=MAX_LR, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=MAX_LR, total_steps=steps)
    model.train()
    for _ in range(EPOCHS):
        for inputs, labels in loader:
            raise_if_interrupted()  # a Ctrl-C swallowed inside torch's own callbacks ends training here
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def cache_path() -> Path:
    """Cached weights live under the home; the file name carries the recipe hash, so a new recipe retrains."""
    digest = hashlib.sha256(TRAINING_RECIPE.encode()).hexdigest()[:12]
    return home() / "examples" / f"digits-{digest}.pt"


def load_task() -> Task:
    """The trained digits model (trained on first use, then read from the cache), its data and accuracy."""
    splits = data_splits()
    path = cache_path()
    model = DigitsResNet(WIDTHS)
    state = None
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, OSError, KeyError) as error:
            log.warning("cached digits model at %s is unreadable (%s): retraining", path, error)
            state = None
    if state is None:
        started = time.perf_counter()
        log.info("training the digits example (once; cached at %s)", path)
        model = _train()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        torch.save(model.state_dict(), partial)
        os.replace(partial, path)  # atomic: workers starting together never read a half-written file
        log.info("trained in %.0f s", time.perf_counter() - started)
    model.eval()
    return Task(
        name="digits",
        model=model,
        example_input=torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE),
        data=splits,
        metric=accuracy,
    )
