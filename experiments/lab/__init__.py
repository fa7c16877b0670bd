"""Tooling of the experiment scripts (sweeps and critical-rho fits, plots, FLOP counting,
workdir evaluation). Nothing in ``hermite_vae`` imports from here. The scripts import it
as ``lab`` (their own folder is on ``sys.path``), tests as ``experiments.lab``."""
