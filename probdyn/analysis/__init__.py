"""Dynamical-systems analysis of trained recurrent networks.

Fixed and slow points, Jacobians and stability, noise-sustained orbits, dwell regions and
unit ablations, for any map ``h -> F(h, x)``.
"""

__all__: list[str] = []
