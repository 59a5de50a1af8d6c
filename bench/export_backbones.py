"""``torch.export`` of every registered backbone, timed against its eager forward.

The contract test (``tests/models/test_models_backbones.py``) exports the cheap entries;
this script checks all of them, including the ones marked ``heavy`` (S3D, Swin3D-T,
MViT-v2-S, DenseNet-121 3-D), at each entry's documented minimum input size.

    OMP_NUM_THREADS=1 python bench/export_backbones.py
"""

from __future__ import annotations

import time

import torch

from hidim.models.registry import available_backbones, backbone_spec, get_backbone


def main() -> None:
    torch.set_num_threads(1)
    print(
        f"{'backbone':16s} {'T,H,W':>14s} {'params':>10s} {'eager s':>8s} {'export s':>9s} "
        f"{'exported/eager s':>16s}  max |diff|"
    )
    for name in available_backbones():
        spec = backbone_spec(name)
        net = get_backbone(name, in_channels=1).eval()
        x = torch.randn(1, 1, *spec.min_shape())
        t0 = time.perf_counter()
        with torch.no_grad():
            y = net(x)
        eager = time.perf_counter() - t0
        if spec.export != "export":
            print(f"{name:16s} {str(spec.min_shape()):>14s}  (not exportable)")
            continue
        t0 = time.perf_counter()
        program = torch.export.export(net, (x,))
        export_s = time.perf_counter() - t0
        module = program.module()
        t0 = time.perf_counter()
        with torch.no_grad():
            z = module(x)
        run_s = time.perf_counter() - t0
        params = sum(p.numel() for p in net.parameters())
        diff = float((z - y).abs().max())
        print(
            f"{name:16s} {str(spec.min_shape()):>14s} {params:>10,d} {eager:8.2f} "
            f"{export_s:9.2f} {run_s / eager:16.2f}  {diff:.1e}"
        )


if __name__ == "__main__":
    main()
