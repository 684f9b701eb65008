"""Trainable adapters injected into the frozen SAM ViT (as :class:`~sam_cffnet.models.encoders.sam.BlockInjector`)."""

from .atl import ATL_KINDS, PromptATL, SpaceATL, build_atl, highpass_fft, lowfreq_square

__all__ = ['ATL_KINDS', 'PromptATL', 'SpaceATL', 'build_atl', 'highpass_fft', 'lowfreq_square']
