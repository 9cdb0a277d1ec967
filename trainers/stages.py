"""Layers by name: every model is an ordered stack of named stages.

Hidden-layer attacks, per-layer adversarial pools, unit analysis and spectral bounds all need
the same two operations: run a model up to a named layer (:meth:`StagedNetwork.activations`)
and run the rest of it from that layer's output (:meth:`StagedNetwork.forward_from`). Model
families only declare their stages; nothing outside ``trainers/`` needs to know how a net is
wired. The attack on layer k is the input attack applied to "the rest of the network from
k", inside that layer's valid range (:meth:`StagedNetwork.layer_bounds`), as in Szegedy et al.
(2013), Section 4.3's layer-wise view of a network as a composition of maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

# The one definition of layer names and output ranges for any module (a small, deliberate
# exception to "trainers imports nothing of ours": a second copy of the range rules here
# would drift from the attacks' boxes).
from intriguing.attacks.layers import INPUT, layer_range


class StagedNetwork(nn.Module):
    """A classifier built as named stages, ``input -> stage_1 -> ... -> logits``.

    ``stages`` maps names to modules in order; the last stage returns logits. The name
    ``"input"`` stands for the network's input, so that an attack "at layer input" is the
    ordinary input attack.
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, nn.Module]],
        *,
        input_shape: Sequence[int],
        input_bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        names = [name for name, _ in stages]
        if not names:
            raise ValueError("a StagedNetwork needs at least one stage")
        if len(set(names)) != len(names) or INPUT in names:
            raise ValueError(f"stage names must be unique and not {INPUT!r}: {names}")
        self.stages = nn.ModuleDict(dict(stages))
        self.input_shape = tuple(int(d) for d in input_shape)
        self._bounds = {INPUT: input_bounds}
        self._bounds.update({name: layer_range(module) for name, module in stages})
        self._shapes = self._trace_shapes()

    @torch.no_grad()
    def _trace_shapes(self) -> dict[str, tuple[int, ...]]:
        was_training = self.training
        self.eval()
        h = torch.zeros(1, *self.input_shape)
        shapes = {INPUT: self.input_shape}
        for name, stage in self.stages.items():
            h = stage(h)
            shapes[name] = tuple(h.shape[1:])
        self.train(was_training)
        return shapes

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``"input"`` and every stage's name, in order."""
        return (INPUT, *self.stages.keys())

    @property
    def hidden_layer_names(self) -> tuple[str, ...]:
        """Names of the stages between the input and the logits."""
        return tuple(self.stages.keys())[:-1]

    @property
    def num_classes(self) -> int:
        return self._shapes[self.layer_names[-1]][0]

    def check_layer(self, name: str) -> None:
        """Raise a ``ValueError`` naming the layers there are when ``name`` is not one."""
        if name not in self._bounds:
            raise ValueError(f"unknown layer {name!r}; this network has {list(self.layer_names)}")

    def layer_bounds(self, name: str) -> tuple[float, float]:
        """Elementwise range of the layer's output (the input's box for ``"input"``)."""
        self.check_layer(name)
        return self._bounds[name]

    def layer_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one example's activation at the layer."""
        self.check_layer(name)
        return self._shapes[name]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages.values():
            x = stage(x)
        return x

    def activations(self, x: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
        """The outputs of the named layers for input ``x``, running no further than needed."""
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            self.check_layer(name)
        found: dict[str, Tensor] = {}
        if INPUT in wanted:
            found[INPUT] = x
        h = x
        for name, stage in self.stages.items():
            if len(found) == len(wanted):
                break
            h = stage(h)
            if name in wanted:
                found[name] = h
        return {name: found[name] for name in wanted}

    def forward_from(self, name: str, h: Tensor) -> Tensor:
        """Logits computed from ``h``, the output of layer ``name``: the rest of the network."""
        self.check_layer(name)
        started = name == INPUT
        for stage_name, stage in self.stages.items():
            if started:
                h = stage(h)
            started = started or stage_name == name
        return h

    def stages_after(self, name: str) -> list[tuple[str, nn.Module]]:
        """The stages that :meth:`forward_from` runs for layer ``name``."""
        self.check_layer(name)
        names = list(self.layer_names)
        after = names[names.index(name) + 1 :]
        return [(stage_name, self.stages[stage_name]) for stage_name in after]
