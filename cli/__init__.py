"""The ``intriguing`` console script (:mod:`cli.main`): one module per subcommand, plus what
the commands share (experiment runs, tracking, zoos, sweeps, the reproduction study)."""
