"""Borealis: Dynatrace problems into incidents with an evidence-backed root-cause analysis."""

__version__ = "0.1.0"
