"""Inference helpers of the user commands: model loading and chunked file enhancement."""
