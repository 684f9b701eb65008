"""The interface every landslide segmentation model of this package follows.

A model is a plain ``nn.Module`` (no Lightning, no files, no datasets):

* ``forward(*inputs)`` takes the batch entries named by :attr:`LandslideModel.input_keys` (``('image',)`` by
  default: B x C x H x W floats), then those of :attr:`LandslideModel.optional_input_keys` present in the batch, and
  returns landslide logits B x 1 x H x W at the input size;
* frozen parts have ``requires_grad=False`` and never reach an optimizer;
* :meth:`LandslideModel.external_state_keys` lists the state-dict entries that are rebuilt from a pretrained file
  (e.g. the SAM checkpoint), so training checkpoints need not carry them;
* :meth:`LandslideModel.training_outputs` may add auxiliary losses (e.g. HPCL-Net's contrastive loss).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ['LandslideModel', 'count_parameters']


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts (shared tensors counted once)."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {'total': total, 'trainable': trainable, 'frozen': total - trainable}


class LandslideModel(nn.Module):
    """Base class: see the module docstring for the contract."""

    #: batch keys passed positionally to ``forward``.
    input_keys: tuple[str, ...] = ('image',)
    #: batch keys appended after ``input_keys`` while present (e.g. cached encoder ``'features'``).
    optional_input_keys: tuple[str, ...] = ()

    def extra_input_channels(self) -> dict[str, int]:
        """Channels of each input in :attr:`input_keys` other than ``'image'`` (e.g. ``{'dem': 1}``), so that
        example inputs can be built without data (FLOP reports). Default: none."""
        return {}

    def external_state_keys(self) -> list[str]:
        """State-dict keys restored from a pretrained file at construction (not needed in training checkpoints)."""
        return []

    def training_outputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and auxiliary losses for a training batch (default: no auxiliary loss).

        Args:
            batch: the batch dict (``image``, ``mask``, and any other key the model uses).

        Returns:
            ``(logits B x 1 x H x W, {name: scalar loss})``; auxiliary losses are added to the segmentation loss.
        """
        return self(*[batch[k] for k in self.input_keys]), {}

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model for logs and reports."""
        return {'class': type(self).__name__, **count_parameters(self)}
