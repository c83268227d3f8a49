"""Exporters that turn published checkpoints into styleclip model bundles (see export_bundle.py)."""
