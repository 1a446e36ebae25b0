"""Held-out quality measures that need a model's decoded output."""
