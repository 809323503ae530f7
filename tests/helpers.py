"""Test helpers: tiny models, model-state snapshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cleargrad.models import SmallCNN


class FunctionalReLUNet(nn.Module):
    """A small CNN whose ReLUs are all functional calls (no nn.ReLU modules)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x), inplace=True)
        x = torch.relu(self.conv2(x))
        x = self.conv3(x).relu_()
        return self.fc(x.mean(dim=(2, 3)))


class Boom(nn.Module):
    """Identity that raises when armed: induces an error in the middle of a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed and torch.is_grad_enabled():
            raise RuntimeError("boom")
        return x


class BoomNet(nn.Module):
    """SmallCNN with a :class:`Boom` module after the last conv block."""

    def __init__(self) -> None:
        super().__init__()
        self.body = SmallCNN(width=4, num_classes=5)
        self.boom = Boom()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.boom(self.body.features(x))
        return self.body.classifier(a.mean(dim=(2, 3)))


def tiny_cnn(seed: int = 0, num_classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    m = SmallCNN(width=4, num_classes=num_classes)
    # non-trivial BatchNorm statistics, so train/eval mode would matter
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class ModelSnapshot:
    """Everything a public call must leave as it found it."""

    state: dict[str, torch.Tensor]
    training: list[bool]
    requires_grad: list[bool]
    grads: list[torch.Tensor | None]
    grad_values: list[torch.Tensor | None]
    hooks: list[int]
    global_hooks: int
    modes: int

    @classmethod
    def take(cls, model: nn.Module) -> ModelSnapshot:
        params = list(model.parameters())
        from torch.nn.modules import module as M

        return cls(
            state={k: v.detach().clone() for k, v in model.state_dict().items()},
            training=[m.training for m in model.modules()],
            requires_grad=[p.requires_grad for p in params],
            grads=[p.grad for p in params],
            grad_values=[None if p.grad is None else p.grad.clone() for p in params],
            hooks=[len(getattr(m, d, {}) or {}) for m in model.modules() for d in _HOOK_DICTS],
            global_hooks=len(M._global_forward_hooks) + len(M._global_backward_hooks)
            + len(M._global_forward_pre_hooks),
            modes=torch._C._len_torch_function_stack(),
        )

    def assert_same(self, model: nn.Module) -> None:
        now = ModelSnapshot.take(model)
        assert now.training == self.training, "module training flags changed"
        assert now.requires_grad == self.requires_grad, "requires_grad flags changed"
        assert all(a is b for a, b in zip(now.grads, self.grads)), ".grad objects replaced"
        for a, b in zip(now.grad_values, self.grad_values):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.equal(a, b), ".grad values changed"
        assert now.hooks == self.hooks, "hooks left registered on a module"
        assert now.global_hooks == self.global_hooks, "global module hooks left registered"
        assert now.modes == self.modes, "a torch function mode was left active"
        assert now.state.keys() == self.state.keys()
        for k in self.state:
            assert torch.equal(now.state[k], self.state[k]), f"{k} changed"


def assert_untouched_when_forward_raises(model: nn.Module, module: nn.Module, call: Callable[[], object]) -> None:
    """``call()`` (a public call on ``model``) while ``module``'s forward raises: the error
    comes through and the model is left as it was with the raising hook registered."""

    def boom(_m: nn.Module, _args: object) -> None:
        raise RuntimeError("boom")

    handle = module.register_forward_pre_hook(boom)
    try:
        armed = ModelSnapshot.take(model)
        with pytest.raises(RuntimeError, match="boom"):
            call()
        armed.assert_same(model)
    finally:
        handle.remove()


def small_cnn_with_statistics(seed: int = 0, num_classes: int = 5, width: int = 4) -> nn.Module:
    """An eval-mode SmallCNN whose batch norms hold non-trivial running statistics (a fresh
    one has mean 0 and variance 1, which folding would leave nearly unchanged)."""
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=num_classes, width=width)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return model.eval()
