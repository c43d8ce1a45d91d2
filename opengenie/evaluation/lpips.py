"""LPIPS lives in `opengenie.features.lpips`; this name keeps `opengenie.evaluation.lpips` imports working."""

from opengenie.features.lpips import LPIPS, VGG16, AlexNet, load_alexnet, load_lpips, load_vgg16

__all__ = ["LPIPS", "VGG16", "AlexNet", "load_alexnet", "load_lpips", "load_vgg16"]
