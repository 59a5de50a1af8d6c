"""Self-supervised pretraining of the video encoder on unlabelled clips of a store.

Echo labs hold far more unlabelled loops than labelled ones. ``hidim pretrain`` trains the
image encoder with a contrastive objective — SimCLR's NT-Xent (default) or VICReg — on
pairs of clips of the same series at different start times, each with its own
video-consistent augmentation, and writes a run directory whose ``checkpoints/model.pt``
``model.init_from`` reads like any supervised run's:

    from hidim.pretrain import load_ssl_config, pretrain
    result = pretrain(load_ssl_config("configs/ssl_pretrain.yaml"), "runs/ssl")
    # then in a training config: model: {backbone: <same>, init_from: runs/ssl}

Modules: :mod:`.config` (YAML config), :mod:`.losses` (pure objectives and monitors),
:mod:`.augment` (sample/apply per-view augmentations), :mod:`.data` (pairs of views from
``ClipDataset``), :mod:`.module` (LightningModule), :mod:`.run` (the run directory).
"""

from __future__ import annotations

from hidim.pretrain.config import SSLConfig, load_ssl_config, ssl_config_from_dict
from hidim.pretrain.run import PretrainResult, pretrain

__all__ = ["SSLConfig", "load_ssl_config", "ssl_config_from_dict", "pretrain", "PretrainResult"]
