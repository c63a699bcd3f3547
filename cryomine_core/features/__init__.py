"""Hand-made rotation-invariant features of subtomograms (baseline of classification and subdivision)."""

from cryomine_core.features.spharm import fourier_amplitude, rotation_invariant_features, shell_radii

__all__ = ["fourier_amplitude", "rotation_invariant_features", "shell_radii"]
