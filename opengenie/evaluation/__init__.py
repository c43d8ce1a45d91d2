"""Evaluation: image and video metrics. The pretrained feature networks they rely on live in
`opengenie.features` and are re-exported here.

    psnr, ssim          pixel metrics per frame              (image_metrics.py)
    load_lpips          LPIPS distance, AlexNet or VGG16     (features/lpips.py)
    load_vgg16          the frozen VGG16 trunk, for a perceptual loss
    fvd, frechet_distance, i3d_features, load_i3d            (fvd.py, features/i3d.py)
    fetch, weights_path the offline weight cache             (features/weights.py)
    controllability, delta_t_psnr   ΔtPSNR of a world model  (controllability.py)
    evaluate_world, run_eval        every metric of a world; `opengenie eval`  (evaluate.py, report.py)
"""

from opengenie.evaluation.controllability import controllability, delta_t_psnr
from opengenie.evaluation.evaluate import evaluate_world
from opengenie.evaluation.fvd import frechet_distance, fvd
from opengenie.features.i3d import i3d_features, load_i3d
from opengenie.evaluation.image_metrics import psnr, ssim
from opengenie.features.lpips import load_lpips, load_vgg16
from opengenie.evaluation.report import run_eval
from opengenie.features.weights import fetch, weights_path

__all__ = [
    "controllability", "delta_t_psnr", "evaluate_world", "run_eval",
    "fetch", "frechet_distance", "fvd", "i3d_features", "load_i3d", "load_lpips", "load_vgg16",
    "psnr", "ssim", "weights_path",
]
