"""Pipelines: functions that take typed inputs and return typed results, callable from a
notebook as from the command line (``intriguing.cli`` only parses arguments and prints).

- :mod:`intriguing.pipelines.train`: ``train(cfg) -> RunSummary``, a run from its config;
  ``train_with_baseline(cfg) -> Comparison``, a run beside the same training without
  backfeeding, and the comparison's table.
- :mod:`intriguing.pipelines.runs`: run folders, ``summary.json`` (:class:`RunSummary`,
  finished or failed), config fingerprints, finding a finished run to reuse.
- :mod:`intriguing.pipelines.build`: a run's Trainer, callbacks and classifier from its config.
- :mod:`intriguing.pipelines.evaluation`: a run's ``evaluation`` section, checked and measured.
- :mod:`intriguing.pipelines.validate`: the whole config validated before anything trains.
- :mod:`intriguing.pipelines.tracking`: W&B and CSV loggers, W&B runs of analysis commands.
- :mod:`intriguing.pipelines.zoo`: the paper's model zoos, trained on demand.
- :mod:`intriguing.pipelines.study`: the paper's MNIST study (``plan_study``, ``run_study``);
  :mod:`intriguing.pipelines.reproduce`: the study with its report written and logged.
- :mod:`intriguing.pipelines.transfer`: the transfer study of given checkpoints (Tables 2-4).
- :mod:`intriguing.pipelines.units`: units versus random directions written to disk.
- :mod:`intriguing.pipelines.attack`: a checkpoint's minimum distortion (Table 1),
  ``attack_checkpoint(settings) -> AttackRecord``.
- :mod:`intriguing.pipelines.evaluate_models`: robust error at fixed budgets with the
  gradient-masking checks, ``evaluate_models(settings) -> ModelEvaluations``.
- :mod:`intriguing.pipelines.spectral`: upper Lipschitz bounds (Table 5),
  ``spectral_report(settings) -> SpectralReport``.
- :mod:`intriguing.pipelines.models`: any ``nn.Module`` from ``MODULE:FACTORY``, and its weights.
- :mod:`intriguing.pipelines.data`: a checkpoint's data settings and a split's examples.
- :mod:`intriguing.pipelines.sweep`: a W&B sweep file run here on W&B's own engine.
- :mod:`intriguing.pipelines.sweep_file`: sweep files read, checked and drawn from.
"""
