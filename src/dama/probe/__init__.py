"""Where does a model need adapting? Per-layer probes; the DAMA allocation derived from their profiles is
:mod:`dama.adapt.allocation`."""

from __future__ import annotations

from dama.probe.features import LayerFeatures, layer_features
from dama.probe.measures import gradient_importance, language_variance, lid_probe, linear_cka
from dama.probe.run import run_probe, table, write_probe

__all__ = ["LayerFeatures", "gradient_importance", "language_variance", "layer_features", "lid_probe", "linear_cka",
           "run_probe", "table", "write_probe"]
