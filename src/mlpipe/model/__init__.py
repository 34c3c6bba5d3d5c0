"""The model: LightGBM training (in process or on a Dask cluster), tuning, scoring, evaluation,
its plots and the training record."""
