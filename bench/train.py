"""Training throughput: ``hidim train``'s Lightning loop vs a hand-written PyTorch loop.

Same backbone (``small3d``), same store, same clips, same batch size, same optimiser, in one
process, so the ratio isolates the framework's overhead (Lightning, the DataModule wrapper,
logging, checkpoint callbacks). Also measured: the data loader alone (clips/s it can supply
vs what the model consumes), peak RSS, and bf16 autocast on/off on the CPU.

    OMP_NUM_THREADS=1 python bench/train.py            # ~2-3 minutes on one core
    python bench/train.py --patients 64 --epochs 3 --size 64 --frames 32

Goals: hidim / plain >= 0.9; loader supply >= 3x model consumption.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hidim.store import ClipDataset
from hidim.store.writer import init_store, write_labels, write_manifest, write_series_array


def make_store(root: Path, *, patients: int, frames: int, size: int, seed: int = 0) -> Path:
    """A store of ``patients`` cine loops of a pulsing disk (EF-like target)."""
    rng = np.random.default_rng(seed)
    init_store(root)
    rows, labels = [], []
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    norm = json.dumps({"method": "scale", "scale": 1 / 255, "offset": 0.0, "clip": None})
    for p in range(patients):
        ef = rng.uniform(0.2, 0.7)
        t = np.arange(frames)
        area = 1 - ef * (1 - np.cos(2 * np.pi * t / 24)) / 2
        arr = np.empty((1, frames, size, size), np.uint8)
        for i, a in enumerate(area):
            img = np.where(np.hypot(yy, xx) < size * 0.3 * np.sqrt(a), 40, 160)
            arr[0, i] = np.clip(img + rng.normal(0, 12, img.shape), 0, 255)
        key = f"{p:016x}"
        info = write_series_array(root, key, arr)
        split = "train" if p % 5 < 4 else "val"
        rows.append(
            dict(
                series_key=key,
                series_uid=f"1.{p}",
                study_uid=f"2.{p}",
                patient_key=f"P{p}",
                modality="US",
                view="A4C",
                channels=1,
                n_frames=frames,
                rows=size,
                cols=size,
                fps=30.0,
                intensity_norm=norm,
                split=split,
                array_path=info["array_path"],
            )
        )
        labels.append({"patient_key": f"P{p}", "ef": 100 * ef})
    write_manifest(root, rows)
    write_labels(root, pd.DataFrame(labels))
    return root


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(store: Path, *, clip: int, batch: int, epochs: int, precision: str = "32-true"):
    from hidim.training.config import config_from_dict

    return config_from_dict(
        {
            "data": {
                "store": str(store),
                "views": ["A4C"],
                "target": "ef",
                "clip_frames": clip,
                "batch_size": batch,
                "sampling": "random",
            },
            "model": {"backbone": "small3d"},
            "task": {"head": "regression", "params": {"loss": "mse"}},
            "optim": {"lr": 1e-3, "scheduler": "none"},
            "trainer": {
                "max_epochs": epochs,
                "precision": precision,
                "loggers": ["csv"],
                "progress_bar": False,
                "early_stopping_patience": 0,
                "deterministic": False,
            },
        }
    )


def hidim_loop(
    store: Path, out: Path, *, clip: int, batch: int, epochs: int, precision: str = "32-true"
) -> float:
    """Clips/s of training epochs 2.. of hidim's Lightning loop (epoch 1 is warm-up)."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    from hidim.training.datamodule import HidimDataModule
    from hidim.training.module import HidimModule

    cfg = config(store, clip=clip, batch=batch, epochs=epochs, precision=precision)
    times: list[float] = []

    class Timer(Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            times.append(time.perf_counter() - self.t0)

    L.seed_everything(0, verbose=False)
    dm = HidimDataModule(cfg.data, seed=0)
    dm.setup()
    module = HidimModule(config=cfg, in_channels=1)
    module.head.fit_target(dm.train_arrays()["target"])
    trainer = L.Trainer(
        max_epochs=epochs,
        precision=precision,
        logger=L.pytorch.loggers.CSVLogger(str(out)),
        callbacks=[
            Timer(),
            ModelCheckpoint(dirpath=str(out / "ckpt"), save_last=True),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=5,
    )
    trainer.fit(module, datamodule=dm)
    n = len(dm.datasets["train"])
    return n * (len(times) - 1) / sum(times[1:])


def plain_loop(store: Path, *, clip: int, batch: int, epochs: int, autocast: bool = False) -> float:
    """Clips/s of a hand-written loop: same model, data, batch, optimiser."""
    from hidim.models.registry import get_backbone

    torch.manual_seed(0)
    ds = ClipDataset(store, split="train", clip_frames=clip, sampling="random", targets="ef")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0)
    backbone = get_backbone("small3d", in_channels=1)
    head = torch.nn.Linear(backbone.out_dim, 1)
    model = torch.nn.Sequential(backbone, head)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    y_mean, y_std = 45.0, 14.0
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for item in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                pred = model(item["clip"])[:, 0]
            loss = torch.nn.functional.mse_loss(pred.float(), (item["target"] - y_mean) / y_std)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return len(ds) * (epochs - 1) / sum(times[1:])


def loader_only(store: Path, *, clip: int, batch: int, epochs: int) -> float:
    """Clips/s the DataModule's training loader supplies with no model attached."""
    from hidim.training.datamodule import HidimDataModule

    dm = HidimDataModule(config(store, clip=clip, batch=batch, epochs=1).data, seed=0)
    dm.setup()
    n, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        dm.set_epoch(epoch)
        for b in dm.train_dataloader():
            n += b["clip"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--clip", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = make_store(
            root / "store", patients=args.patients, frames=args.frames, size=args.size
        )
        kw = dict(clip=args.clip, batch=args.batch, epochs=args.epochs)
        res: dict[str, float] = {
            "loader_clips_s": 0.0,
            "plain_clips_s": 0.0,
            "hidim_clips_s": 0.0,
            "plain_bf16_clips_s": 0.0,
            "hidim_bf16_clips_s": 0.0,
        }
        for r in range(args.repeats):  # alternate, keep the best of each (least disturbed)
            res["loader_clips_s"] = max(res["loader_clips_s"], loader_only(store, **kw))
            res["rss_after_loader_mb"] = peak_rss_mb()
            res["plain_clips_s"] = max(res["plain_clips_s"], plain_loop(store, **kw))
            res["hidim_clips_s"] = max(
                res["hidim_clips_s"], hidim_loop(store, root / f"h32_{r}", **kw)
            )
            res["rss_after_fp32_mb"] = peak_rss_mb()
            res["plain_bf16_clips_s"] = max(
                res["plain_bf16_clips_s"], plain_loop(store, autocast=True, **kw)
            )
            res["hidim_bf16_clips_s"] = max(
                res["hidim_bf16_clips_s"],
                hidim_loop(store, root / f"hbf_{r}", precision="bf16-mixed", **kw),
            )
        res["rss_peak_mb"] = peak_rss_mb()
    print(json.dumps({k: round(v, 2) for k, v in res.items()}, indent=2))
    print(
        f"hidim / plain loop (fp32):      {res['hidim_clips_s'] / res['plain_clips_s']:.2f}x  (goal >= 0.9)"
    )
    print(
        f"loader supply / hidim consumes: {res['loader_clips_s'] / res['hidim_clips_s']:.1f}x  (goal >= 3)"
    )
    print(
        f"bf16 / fp32, plain loop:        {res['plain_bf16_clips_s'] / res['plain_clips_s']:.2f}x"
    )
    print(
        f"bf16 / fp32, hidim loop:        {res['hidim_bf16_clips_s'] / res['hidim_clips_s']:.2f}x"
    )
    print(f"peak RSS: {res['rss_peak_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
