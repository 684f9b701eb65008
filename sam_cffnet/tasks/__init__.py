"""Lightning tasks."""

from .segmentation import SegmentationTask, export_checkpoint

__all__ = ['SegmentationTask', 'export_checkpoint']
