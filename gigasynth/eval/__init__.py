"""Quality measurement: FID/KID (offline Inception), SWD, PSNR/SSIM and the seam check."""

from gigasynth.eval.compare import METRICS, compare_sets, format_metrics
from gigasynth.eval.feature_distances import frechet_distance, kernel_inception_distance
from gigasynth.eval.fidelity import psnr, ssim
from gigasynth.eval.inception import inception_features, inception_path
from gigasynth.eval.inputs import load_images, open_regions
from gigasynth.eval.seams import SeamStats, seam_check
from gigasynth.eval.swd import sliced_wasserstein_distance

__all__ = [
    "METRICS", "SeamStats", "compare_sets", "format_metrics", "frechet_distance",
    "inception_features", "inception_path", "kernel_inception_distance", "load_images",
    "open_regions", "psnr", "seam_check", "sliced_wasserstein_distance", "ssim",
]
