"""Task heads and losses: classification, regression, survival, evidential.

Every head implements :class:`hidim.tasks.base.Head`; a head takes a feature tensor
``[B, D]`` and knows nothing of backbones.
"""
