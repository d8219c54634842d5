"""Restore drills: prove a backup restores a working application."""
