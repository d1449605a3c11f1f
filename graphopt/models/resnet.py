"""ResNet-50 (He et al., 2015, torchvision's v1.5 layout: stride on the 3x3
conv) written out in torch, with random weights, and its ONNX export.

torchvision from PyPI does not import beside torch 2.13 here, so the
architecture is spelled out (~60 lines). Weights are random but *calibrated*:
BatchNorm running statistics are estimated from a few random batches, so the
activations stay O(1) through all 50 layers, as in a trained network, instead
of exploding or vanishing (which would make numeric comparisons meaningless).

>>> from graphopt.models.resnet import resnet50_onnx
>>> spec = resnet50_onnx()          # doctest: +SKIP  (cached ONNX, input "image" [batch,3,224,224])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import GraphoptError
from .transformers_onnx import DEFAULT_CACHE, ModelSpec

__all__ = ["resnet50", "resnet50_onnx"]

logger = logging.getLogger(__name__)


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise GraphoptError("building ResNet-50 needs PyTorch: pip install 'graphopt[torch]' (torch==2.13.0)") from e
    return torch


def resnet50(num_classes: int = 1000, *, seed: int = 0, width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> Any:
    """A ResNet-50 ``torch.nn.Module`` in eval mode with random, BN-calibrated
    weights. ``width``/``blocks`` shrink it for quick tests (ResNet-50 is the
    default 64 / (3, 4, 6, 3))."""
    torch = _torch()
    nn = torch.nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, cin: int, mid: int, stride: int) -> None:
            super().__init__()
            cout = mid * self.expansion
            self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.down is None else self.down(x)))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            layers, cin = [], width
            for i, n in enumerate(blocks):
                mid = width * 2**i
                for j in range(n):
                    layers.append(Bottleneck(cin, mid, 2 if (j == 0 and i > 0) else 1))
                    cin = mid * Bottleneck.expansion
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, image: Any) -> Any:
            return self.fc(torch.flatten(self.pool(self.layers(self.stem(image))), 1))

    g = torch.manual_seed(seed)
    net = ResNet()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.0, generator=g)
            nn.init.uniform_(m.bias, -0.1, 0.1, generator=g)
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():  # estimate BN statistics so every layer sees ~unit-variance input
        for _ in range(2):
            net(torch.randn(4, 3, 64, 64, generator=g))
    return net.eval()


def resnet50_onnx(cache_dir: Path | None = None, opset: int = 17) -> ModelSpec:
    """ResNet-50 with random weights exported through :func:`graphopt.from_torch`
    (dynamic batch, input ``image`` [batch, 3, 224, 224], output ``logits``), cached."""
    path = (Path(cache_dir) if cache_dir else DEFAULT_CACHE) / f"resnet50-random-op{opset}.onnx"
    if not path.exists():
        torch = _torch()
        from ..io import save
        from ..io.torch_import import from_torch

        logger.info("building ResNet-50 with random weights and exporting to %s", path)
        net = resnet50()
        model = from_torch(net, (torch.randn(2, 3, 224, 224),), input_names=["image"], output_names=["logits"],
                           dynamic_shapes={"image": {0: "batch"}}, opset=opset)
        tmp = path.with_suffix(".tmp.onnx")
        save(model, tmp)
        tmp.replace(path)
    return ModelSpec(path, ("image",), "resnet50")
