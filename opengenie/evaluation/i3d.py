"""I3D lives in `opengenie.features.i3d`; this name keeps `opengenie.evaluation.i3d` imports working."""

from opengenie.features.i3d import ENDPOINTS, I3D, i3d_features, load_i3d, preprocess

__all__ = ["ENDPOINTS", "I3D", "i3d_features", "load_i3d", "preprocess"]
