"""Quality measurement: FID/KID (offline Inception), SWD, PSNR/SSIM, the seam check, and
slide-scale evaluation on held-out tissue at several zooms (evaluate_slide)."""

from gigasynth.eval.compare import METRICS, compare_sets, format_metrics
from gigasynth.eval.feature_distances import frechet_distance, kernel_inception_distance
from gigasynth.eval.fidelity import psnr, ssim
from gigasynth.eval.inception import inception_features, inception_path
from gigasynth.eval.inputs import load_images, open_regions
from gigasynth.eval.seams import SeamStats, seam_check
from gigasynth.eval.slide import SlideEvaluation, evaluate_slide
from gigasynth.eval.swd import sliced_wasserstein_distance

__all__ = [
    "METRICS",
    "SeamStats",
    "SlideEvaluation",
    "compare_sets",
    "evaluate_slide",
    "format_metrics",
    "frechet_distance",
    "inception_features",
    "inception_path",
    "kernel_inception_distance",
    "load_images",
    "open_regions",
    "psnr",
    "seam_check",
    "sliced_wasserstein_distance",
    "ssim",
]
