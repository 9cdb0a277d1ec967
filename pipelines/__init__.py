"""Pipelines: functions that take typed inputs and return typed results, callable from a
notebook as from the command line (``intriguing.cli`` only parses arguments and prints).

- :mod:`intriguing.pipelines.sweep`: a W&B sweep file run here on W&B's own engine.
- :mod:`intriguing.pipelines.sweep_file`: sweep files read, checked and drawn from.
"""
