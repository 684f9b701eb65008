"""The SAM encoder's options are its recorded constructor arguments, and SAM sizes have one table."""

from __future__ import annotations

import inspect
import typing

import pytest

from sam_cffnet.errors import ConfigError
from sam_cffnet.models import build_model
from sam_cffnet.models.encoders import sam
from sam_cffnet.models.encoders.sam import SAM_VARIANTS, SAMEncoder


def test_options_are_the_recorded_arguments_without_the_internal_ones() -> None:
    encoder = SAMEncoder('vit_tiny', input_size=None, band_indices=(2, 1, 0), out_indices=(-1,))
    parameters = [n for n in inspect.signature(SAMEncoder).parameters if n not in SAMEncoder.internal_arguments]
    assert list(encoder.options) == parameters
    assert encoder.options['band_indices'] == [2, 1, 0]  # plain data (a tuple becomes a list)
    assert encoder.options['variant'] == 'vit_tiny' and encoder.options['input_size'] is None


def test_an_encoder_argument_added_reaches_the_options_and_the_model_config_with_no_other_edit() -> None:
    class WiderEncoder(SAMEncoder):
        def __init__(self, drop_path: float = 0.25, **kwargs: typing.Any) -> None:
            super().__init__(**kwargs)

    encoder = WiderEncoder(variant='vit_tiny', input_size=None)
    assert encoder.options['drop_path'] == 0.25
    assert encoder.options['variant'] == 'vit_tiny'
    model = build_model('sam_cffnet', variant='vit_tiny', input_size=None, attention='sdpa')
    assert {k: model.config()['init_args'][k] for k in model.encoder.options} == model.encoder.options


def test_the_variant_table_is_the_only_list_of_sam_sizes() -> None:
    variant = inspect.signature(SAMEncoder).parameters['variant'].annotation
    assert typing.get_args(typing.get_type_hints(SAMEncoder.__init__)['variant']) == tuple(SAM_VARIANTS)
    assert variant == 'SAMVariantName'
    with pytest.raises(ConfigError, match='unknown SAM encoder'):
        sam.sam_variant('vit_x')
    with pytest.raises(ConfigError, match='unknown SAM encoder'):
        build_model('translandseg', variant='vit_x', input_size=None)
