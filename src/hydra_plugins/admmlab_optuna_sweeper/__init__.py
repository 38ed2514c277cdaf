"""``hydra/sweeper=optuna``: an Optuna ≥ 4 sweeper with the official plugin's keys."""
