"""Encoder + decoder forward: our reference-default SAM-CFFNet vs. the reference-equivalent computation.

The reference (``model/SAM_CFFNet.py``) runs SAM's full image encoder including its neck, whose output it throws
away, then the CFFD decoder. Ours never builds the neck. Both run here with the same random weights on the same
input, side by side in one process; the table gives the time ratio and the largest difference of the logits.

    python benchmarks/model_forward.py                      # ViT-L, 256 px tile -> 1024 px encoder input
    python benchmarks/model_forward.py --encoder vit_b --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import time
from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from sam_cffnet import SAMCFFNet


def reference_forward(vit: ImageEncoderViT, model: SAMCFFNet, x: torch.Tensor) -> torch.Tensor:
    """The reference's SAM_CFFNet.forward: resize, full ViT with the neck (discarded), CFFD."""
    x = F.interpolate(x, size=(1024, 1024), mode='bilinear')
    tokens = vit.patch_embed(x) + vit.pos_embed
    feats = []
    for i, blk in enumerate(vit.blocks):
        tokens = blk(tokens)
        if i in model.encoder.out_indices:
            feats.append(tokens.permute(0, 3, 1, 2))
    _ = vit.neck(tokens.permute(0, 3, 1, 2))  # computed and thrown away, as the reference does
    return model.decoder(feats, x)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()
    best = float('inf')
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--encoder', default='vit_l', choices=['vit_b', 'vit_l', 'vit_h'])
    parser.add_argument('--tile', type=int, default=256)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SAMCFFNet(variant=args.encoder).eval()
    spec = model.encoder.spec
    vit = ImageEncoderViT(
        img_size=1024, embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=spec.window_size,
        global_attn_indexes=spec.global_attn_indexes,
    ).eval()  # fmt: skip
    vit.load_state_dict(model.encoder.vit.state_dict(), strict=False)  # same weights; the neck stays random
    x = torch.rand(args.batch, 3, args.tile, args.tile)
    with torch.no_grad():
        t_ref, ref = timed(lambda: reference_forward(vit, model, x), args.repeats)
        t_ours, ours = timed(lambda: model(x), args.repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'SAM-CFFNet {args.encoder}, tile {args.tile} -> encoder 1024, batch {args.batch}, best of {args.repeats}')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, peak RSS of the process {rss:.0f} MiB')
    print('| path | seconds / batch | ratio to reference |')
    print('|---|---|---|')
    print(f'| reference-equivalent (full SAM encoder incl. unused neck) | {t_ref:.2f} | 1.000 |')
    print(f'| sam_cffnet (no neck) | {t_ours:.2f} | {t_ours / t_ref:.3f} |')
    print(f'max |logit difference| = {(ref - ours).abs().max().item():.3g}')


if __name__ == '__main__':
    main()
