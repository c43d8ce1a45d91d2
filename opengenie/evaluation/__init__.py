"""Evaluation: image and video metrics, and the pretrained feature networks they rely on.

    psnr, ssim          pixel metrics per frame              (image_metrics.py)
    load_lpips          LPIPS distance, AlexNet or VGG16     (lpips.py)
    load_vgg16          the frozen VGG16 trunk, for a perceptual loss
    fvd, frechet_distance, i3d_features, load_i3d            (fvd.py, i3d.py)
    fetch, weights_path the offline weight cache             (weights.py)
"""

from opengenie.evaluation.fvd import frechet_distance, fvd
from opengenie.evaluation.i3d import i3d_features, load_i3d
from opengenie.evaluation.image_metrics import psnr, ssim
from opengenie.evaluation.lpips import load_lpips, load_vgg16
from opengenie.evaluation.weights import fetch, weights_path

__all__ = [
    "fetch", "frechet_distance", "fvd", "i3d_features", "load_i3d", "load_lpips", "load_vgg16",
    "psnr", "ssim", "weights_path",
]
