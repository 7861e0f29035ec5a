"""Scoring of enhanced speech and reporting: per-utterance metrics, score summaries,
RESULTS.md tables and plots, and the model card used when a packed model is uploaded.

Nothing here is registered into ESPnet: these are tools that read audio and YAML, not model
components.
"""
