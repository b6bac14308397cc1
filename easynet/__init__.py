"""EasyNet-3D: an implementation of EasyNet (ACM MM 2023) for RGB-D industrial anomaly detection."""

__version__ = "0.1.0"
