"""hidim.explain — explanations that are tested, not just drawn.

* :func:`explain` — Grad-CAM / Integrated Gradients / saliency... for video and 3-D inputs,
  one call shape, attribution ``[T, H, W]`` (:mod:`~hidim.explain.saliency`, Captum);
* :mod:`~hidim.explain.render` — overlay GIF/MP4, key-frame panels, per-frame curves;
* :mod:`~hidim.explain.sanity` — Adebayo et al. randomisation tests with a verdict;
* :mod:`~hidim.explain.occlusion` — serial occlusion tests with paired bootstrap CIs;
* :mod:`~hidim.explain.temporal` — cardiac-phase importance;
* :mod:`~hidim.explain.streams` — Shapley importance of image vs tabular inputs;
* :func:`explain_run` — all of it on a trained run → ``explain/summary.json``.
"""

from hidim.explain.run import ExplainRunOptions, explain_run
from hidim.explain.saliency import available_explainers, explain

__all__ = ["explain", "available_explainers", "explain_run", "ExplainRunOptions"]
