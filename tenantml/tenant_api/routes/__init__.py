"""The tenant API's routes, one module per noun: datasets, trainings, models."""
