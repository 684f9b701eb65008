"""Decoders and heads that turn encoder features into landslide logits (CFFD, PSP, ASPP, Lawin, SAM's mask decoder)."""
