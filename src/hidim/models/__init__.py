"""hidim.models: backbones (registry), multi-view and tabular fusion, the full network.

* :mod:`~hidim.models.registry` — ``@register_backbone``, ``get_backbone``,
  ``available_backbones``, ``backbone_spec`` (input limits);
* :mod:`~hidim.models.video` (torchvision video), :mod:`~hidim.models.volume` (MONAI 3-D),
  :mod:`~hidim.models.frame2d` (2-D per-frame baselines), :mod:`~hidim.models.small3d`;
* :mod:`~hidim.models.weights` — pretrained weights from the hub cache or a file, stem
  adaptation; :mod:`~hidim.models.fusion` — ``MultiViewFusion``, ``TabularFusion``;
* :mod:`~hidim.models.network` — ``HidimNet``.

See ``docs/models.md``.
"""
