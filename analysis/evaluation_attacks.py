"""The names of the attacks ``intriguing evaluate`` runs (:func:`analysis.evaluation.
evaluate_robustness`), in a module that imports nothing, so that the command line's
``--help`` can list them without importing torch."""

#: Attacks :func:`analysis.evaluation.evaluate_robustness` runs, by name.
ATTACKS: tuple[str, ...] = (
    "autoattack",
    "autoattack-fast",
    "apgd-ce",
    "apgd-t",
    "fab",
    "square",
    "pgd",
    "fgsm",
    "lbfgs",
)
