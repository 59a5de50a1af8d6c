"""``load_run(run_dir)``: a trained run as eval-mode models plus what they need to be used.

A :class:`RunBundle` gives

* ``.model`` — the first member's :class:`~hidim.models.network.HidimNet` (network + head),
  in eval mode; ``.members`` — every member (ensemble / CV folds);
* ``.config``, ``.store_path``, ``.preprocessing`` (clip frames, fps, intensity, views,
  weights' normalisation, tabular encoder, group vocabulary);
* ``.scorer(output="score")`` — an ``nn.Module`` mapping ``[B, C, T, H, W]`` → ``[B]``,
  the call shape Captum and ``hidim.explain`` need, with ``.gradcam_layer`` naming its
  default Grad-CAM layer.

Only ``checkpoints/model.pt`` files (weights + plain hyper-parameters) are read, with
``torch.load(weights_only=True)``; pretrained weight files are not needed at load time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hidim.errors import TrainingError
from hidim.models.network import HidimNet
from hidim.store import TabularEncoder
from hidim.tasks.feature_density import FeatureDensity
from hidim.training.config import ExperimentConfig, config_from_dict, load_config
from hidim.training.datamodule import GroupCoder
from hidim.training.module import HidimModule
from hidim.training.ood_gate import DENSITY_FILE, load_density
from hidim.training.train import MODEL_FILE, MODEL_FORMAT, PREPROCESSING_FILE

__all__ = ["RunBundle", "Member", "Scorer", "load_run", "load_member"]


@dataclass
class Member:
    """One trained model of a run (``holdout_patients``: its CV validation patients;
    ``density``: its image-embedding density, :mod:`hidim.training.ood_gate`)."""

    path: Path
    net: HidimNet
    holdout_patients: frozenset[str] | None = None
    density: FeatureDensity | None = None


class Scorer(nn.Module):
    """``[B, C, T, H, W]`` → ``[B]``: one prediction of a trained network, for attribution.

    Args:
        net: The network.
        output: Prediction key (``score``, ``value``, ``risk``, ``prob``...).
        target_class: Column of a ``[B, K]`` output (``prob``) to return.
        view: Multi-view networks: slot index the clip goes into (other views masked).
        tabular: ``[F]`` tabular values used for every clip (default: all missing).
    """

    def __init__(
        self,
        net: HidimNet,
        *,
        output: str = "score",
        target_class: int | None = None,
        view: int = 0,
        tabular: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.output = output
        self.target_class = target_class
        self.view = int(view)
        self.tabular = tabular
        inner = net.gradcam_layer
        self.gradcam_layer = f"net.{inner}" if inner else None

    def forward(self, x: Tensor) -> Tensor:
        """Scores ``[B]`` for clips ``[B, C, T, H, W]``."""
        b = x.shape[0]
        mask = None
        if self.net.multiview is not None:
            n_views = self.net.multiview.n_views
            clips = x.new_zeros((b, n_views, *x.shape[1:]))
            clips[:, self.view] = x
            mask = torch.zeros(b, n_views, dtype=torch.bool, device=x.device)
            mask[:, self.view] = True
            x = clips
        tab = miss = None
        if self.net.tabular is not None:
            f = self.net.tabular.n_features
            if self.tabular is None:
                tab = x.new_zeros(b, f)
                miss = torch.ones(b, f, dtype=torch.bool, device=x.device)
            else:
                tab = self.tabular.to(x).reshape(1, f).expand(b, f)
                miss = torch.isnan(tab)
        preds = self.net.head.predict(self.net(x, mask, tab, miss))  # type: ignore[operator]
        if self.output not in preds:
            raise TrainingError(
                f"the head predicts {sorted(preds)}, not {self.output!r}; pick one of those"
            )
        y = preds[self.output]
        if y.ndim == 2:
            if self.target_class is None:
                raise TrainingError(f"output {self.output!r} is [B, K]: pass target_class")
            y = y[:, self.target_class]
        return y


@dataclass
class RunBundle:
    """A trained run, ready for prediction and explanation."""

    run_dir: Path
    config: ExperimentConfig
    members: list[Member]
    preprocessing: dict[str, Any]
    kind: str = "single"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> HidimNet:
        """The first member's network (eval mode)."""
        return self.members[0].net

    @property
    def store_path(self) -> Path:
        """The store the run was trained on."""
        return Path(self.config.data.store)

    @property
    def task(self) -> str:
        """The head's task (``binary``, ``regression``, ``survival`` ...)."""
        return str(self.model.head.task)

    @property
    def tabular_encoder(self) -> TabularEncoder | None:
        """The tabular encoder fitted on the training split (``None`` without tabular)."""
        enc = self.preprocessing.get("tabular_encoder")
        if not enc:
            return None
        return TabularEncoder(
            columns=tuple(enc["columns"]),
            names=list(enc["names"]),
            means=dict(enc["means"]),
            stds=dict(enc["stds"]),
            categories={k: list(v) for k, v in enc["categories"].items()},
        )

    @property
    def group_coder(self) -> GroupCoder | None:
        """The vocabulary of ``group__<col>`` codes."""
        vocab = self.preprocessing.get("group_vocab") or {}
        return GroupCoder(vocab=dict(vocab)) if vocab else None

    def scorer(
        self,
        output: str = "score",
        *,
        member: int = 0,
        target_class: int | None = None,
        view: int = 0,
        tabular: Tensor | None = None,
    ) -> Scorer:
        """An eval-mode ``nn.Module`` ``[B, C, T, H, W]`` → ``[B]`` (see :class:`Scorer`)."""
        return Scorer(
            self.members[member].net,
            output=output,
            target_class=target_class,
            view=view,
            tabular=tabular,
        ).eval()


def load_member(path: str | os.PathLike[str], *, map_location: str = "cpu") -> HidimNet:
    """The eval-mode network stored in ``<member>/checkpoints/model.pt``."""
    file = Path(path) / "checkpoints" / MODEL_FILE
    if not file.is_file():
        raise TrainingError(
            f"expected a trained model at {file}, found none; did `hidim train` finish? "
            "(re-run it to completion)"
        )
    payload = torch.load(file, map_location=map_location, weights_only=True)
    if payload.get("format") != MODEL_FORMAT:
        raise TrainingError(f"{file} is not a hidim model file (format {payload.get('format')!r})")
    hp = payload["hparams"]
    raw = dict(hp["config"])
    raw["model"] = {**raw["model"], "weights": None}  # the state dict carries the weights
    layout = hp.get("tabular_layout")
    module = HidimModule(
        config=config_from_dict(raw, source=str(file)),
        in_channels=int(hp["in_channels"]),
        tabular_layout=(layout[0], [tuple(g) for g in layout[1]]) if layout else None,
    )
    missing, unexpected = module.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise TrainingError(
            f"{file} does not match the network its config builds (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); was it written by another hidim version?"
        )
    return module.net.eval()


def load_run(run_dir: str | os.PathLike[str], *, map_location: str = "cpu") -> RunBundle:
    """Load a run directory written by :func:`hidim.training.train.train`."""
    root = Path(run_dir)
    cfg_file = root / "config.yaml"
    if not cfg_file.is_file():
        raise TrainingError(
            f"expected a training run directory with config.yaml, got {str(root)!r}; pass the "
            "--out folder of `hidim train`"
        )
    config = load_config(cfg_file)
    members_file = root / "members.json"
    info = (
        json.loads(members_file.read_text())
        if members_file.is_file()
        else {"members": [{"dir": "."}]}
    )
    members = []
    for entry in info["members"]:
        holdout = entry.get("holdout_patients")
        members.append(
            Member(
                path=root / entry["dir"],
                net=load_member(root / entry["dir"], map_location=map_location),
                holdout_patients=frozenset(holdout) if holdout is not None else None,
                density=load_density(root / entry["dir"] / "checkpoints" / DENSITY_FILE),
            )
        )
    pre_file = root / PREPROCESSING_FILE
    if not pre_file.is_file():
        raise TrainingError(f"expected {pre_file}; the run did not finish — re-run `hidim train`")
    preprocessing = json.loads(pre_file.read_text())
    return RunBundle(
        run_dir=root,
        config=config,
        members=members,
        preprocessing=preprocessing,
        kind=str(info.get("kind", "single")),
        info=info,
    )
