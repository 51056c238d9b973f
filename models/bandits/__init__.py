"""Exploration strategies beside AGE (models/age.py), their slate rule, propensities and off-policy estimators."""
