"""Retarget Suppressor."""
