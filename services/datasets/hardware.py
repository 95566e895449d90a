"""The device catalogue: what hardware and runtime a dataset's device name stands for, and its batch size.

HELP and LatBench name devices after their files (``titanx_32``: a known GPU/phone family, batch size 32 from the
``_<n>`` suffix); HW-NAS-Bench devices are ``<device>`` or ``<device>-<dataset>`` (``edgegpu-cifar100``).
"""

from __future__ import annotations

import re

from latfarm.predictor.spaces import get_space
from latfarm.services.domain.conditions import PRECISIONS

# name or family -> (hardware, runtime the dataset measured with)
HARDWARE: dict[str, tuple[str, str]] = {
    "1080ti": ("NVIDIA GeForce GTX 1080 Ti GPU", "pytorch"),
    "2080ti": ("NVIDIA GeForce RTX 2080 Ti GPU", "pytorch"),
    "titanx": ("NVIDIA GeForce GTX Titan X GPU", "pytorch"),
    "titanxp": ("NVIDIA Titan Xp GPU", "pytorch"),
    "titan_rtx": ("NVIDIA Titan RTX GPU", "pytorch"),
    "silver_4114": ("Intel Xeon Silver 4114 CPU", "pytorch"),
    "silver_4210r": ("Intel Xeon Silver 4210R CPU", "pytorch"),
    "gold_6240": ("Intel Xeon Gold 6240 CPU", "pytorch"),
    "pixel3": ("Google Pixel 3 phone CPU", "tflite"),
    "pixel2": ("Google Pixel 2 phone CPU", "tflite"),
    "essential_ph": ("Essential Phone PH-1 CPU", "tflite"),
    "samsung_a50": ("Samsung Galaxy A50 phone CPU", "tflite"),
    "samsung_s7": ("Samsung Galaxy S7 phone CPU", "tflite"),
    "raspi4": ("Raspberry Pi 4 CPU", "pytorch"),
    "edgegpu": ("NVIDIA Jetson TX2 edge GPU", "tensorrt"),
    "edgetpu": ("Google Edge TPU", "tflite"),
    "eyeriss": ("Eyeriss ASIC (simulated)", "simulator"),
    "fpga": ("FPGA (Xilinx ZC706, simulated)", "simulator"),
}
_BATCH_SUFFIX = re.compile(r"^(?P<family>.+)_(?P<batch>\d+)$")


def precision_of(name: str) -> str:
    """The precision a dataset's device name states (``pixel7-int8``, ``jetson_fp16``: a ``-`` or ``_`` separated
    ``int8`` / ``fp16`` / ``fp32`` part), else ``fp32``."""
    stated = [part for part in re.split(r"[-_]", name.lower()) if part in PRECISIONS]
    return stated[-1] if stated else "fp32"


def describe_device(name: str) -> dict:
    """Device columns from a dataset's device name: hardware, runtime, batch size (``_<n>`` suffix), precision
    (``precision_of``) and input variant (HW-NAS-Bench's ``-<dataset>`` suffix: resolution px, classes; else
    CIFAR-10's 32 px, 10 classes)."""
    base, batch = name, 1
    if (match := _BATCH_SUFFIX.match(name)) and match["family"] in HARDWARE and name not in HARDWARE:
        base, batch = match["family"], int(match["batch"])
    family = base.split("-")[0]  # HW-NAS-Bench: <device>-<dataset>
    hardware, runtime = HARDWARE.get(base) or HARDWARE.get(family) or (name, "unknown")
    nb201 = get_space("nb201")  # HW-NAS-Bench's <device>-<dataset>: the NB201 input variant of that dataset
    variant = nb201.input_variants.get(base.partition("-")[2].lower(), nb201.variant())
    return {
        "hardware": hardware,
        "runtime": runtime,
        "batch_size": batch,
        "precision": precision_of(name),
        "resolution": variant.resolution,
        "classes": variant.classes,
    }
