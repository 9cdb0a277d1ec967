"""Analyses of trained models, in plain PyTorch plus plotting (imports attacks/, trainers/).

- :mod:`analysis.transfer`: adversarial examples across models and training sets
  (Szegedy et al. 2013, Tables 2-4), with a content-keyed cache of adversarial sets.
- :mod:`analysis.spectral`: per-layer upper bounds of the Lipschitz constant (Section 4.3,
  Table 5), exact for convolutions at their input shape.
- :mod:`analysis.units`: single units versus random directions of a layer (Section 3).
- :mod:`analysis.robustness`: clean error, error under a budget attack, minimum distortion.
- :mod:`analysis.reproduction`, :mod:`analysis.report`, :mod:`analysis.paper`: the study's
  measurements, the paper's figures, and the markdown/HTML report beside them.
- :mod:`analysis.plots`: image grids, heatmaps and histograms (matplotlib, no pyplot state).
- :mod:`analysis.tables`: markdown and CSV text of tables (no torch; the sweep summary uses it).
"""
