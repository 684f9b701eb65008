"""Checkpoint sizes on disk: our slim training checkpoint vs. a self-contained export and the reference's format.

SAM-CFFNet (default: ViT-L, CFFD shared) is trained for one real optimizer step through Lightning's Trainer on a
few synthetic Bijie-layout tiles, with the frozen encoder read from a SAM checkpoint file (random weights written
in the official ``image_encoder.*`` layout, so nothing is downloaded). Then, side by side:

* the SAM checkpoint file itself (what the user already has);
* ``trainer.save_checkpoint``: our training checkpoint (trainable weights + AdamW state + scheduler + what is needed
  to rebuild the frozen encoder; the 1.2 GB of frozen ViT-L weights are left out);
* ``python -m sam_cffnet export``: a self-contained file (frozen weights included);
* the authors' format ``{'epoch', 'state_dict', 'optimizer'}`` holding the whole model incl. the unused SAM neck (ViT-L
  shapes) (what ``{BJL,L4S,GVLM}_best.pth.tar`` look like).

Only the saved content matters here, not the encoder input size, so the encoder runs at 64 px to keep the step short.

    .venv/bin/python benchmarks/checkpoint_size.py                # ViT-L (about 1-2 min, 4 GB of temporary files)
    .venv/bin/python benchmarks/checkpoint_size.py --encoder vit_b
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from sam_cffnet.datamodules import DemoBijieDataModule
from sam_cffnet.models import build_model
from sam_cffnet.models.base import count_parameters
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.models.reference import ours_to_reference
from sam_cffnet.tasks.segmentation import SegmentationTask, export_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--encoder', default='vit_l', help='vit_b, vit_l (default), vit_h')
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings('ignore')
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sam = tmp / f'sam_{args.encoder}_random.pth'
        torch.save({f'image_encoder.{k}': v for k, v in SAMEncoder(args.encoder).vit.state_dict().items()}, sam)

        dm = DemoBijieDataModule(root=str(tmp / 'demo'), tile_size=64, batch_size=2, num_workers=0)
        task = SegmentationTask(
            build_model('sam_cffnet', variant=args.encoder, sam_checkpoint=str(sam), input_size=64),
            num_figure_tiles=0,
        )
        trainer = Trainer(
            accelerator='cpu', devices=1, max_steps=1, limit_train_batches=1, limit_val_batches=0,
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=tmp,
        )  # fmt: skip
        trainer.fit(task, datamodule=dm)
        slim = tmp / 'last.ckpt'
        trainer.save_checkpoint(slim, weights_only=False)  # the full training state, as ModelCheckpoint writes it
        exported = export_checkpoint(slim, tmp / 'exported.ckpt')

        reference = tmp / 'reference_best.pth.tar'
        optimizer = trainer.optimizers[0].state_dict()
        torch.save(
            {'epoch': 1, 'state_dict': ours_to_reference(task.model.state_dict()),
             'optimizer': optimizer},
            reference,
        )  # fmt: skip

        counts = count_parameters(task.model)
        rows = [
            ('SAM checkpoint (user already has it)', sam),
            ('ours: training checkpoint (slim)', slim),
            ('ours: exported, self-contained', exported),
            ("reference format ({'epoch','state_dict','optimizer'})", reference),
        ]
        base = slim.stat().st_size
        print(f'SAM-CFFNet {args.encoder}: {counts["trainable"]:,} trainable, {counts["frozen"]:,} frozen parameters')
        print('| file | MiB | ratio to our training checkpoint |')
        print('|---|---|---|')
        for name, path in rows:
            size = path.stat().st_size
            print(f'| {name} | {size / 2**20:,.1f} | {size / base:.2f} |')
        back = SegmentationTask.from_checkpoint(slim)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            same = torch.equal(back(x), task.eval()(x))
        print(f'slim checkpoint reloads (rebuilding the encoder from the SAM file) to the same outputs: {same}')


if __name__ == '__main__':
    main()
