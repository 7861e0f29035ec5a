"""Fast CPU inference and ONNX export of the enhancement models of this package.

- :mod:`.framing`, :mod:`.frontends`: ESPnet's conv and STFT encoders/decoders as real-valued
  matrix products (framing by reshape, DFT bases, overlap-add by slices), time-major (B, T, C).
- :mod:`.norms`, :mod:`.fused_tcn`: ConvTasNetSkip's mask network with the norms folded into
  the following 1x1 convolutions where that is exact.
- :mod:`.fast_model`: waveform -> enhanced waveform (:class:`FastEnhancer`), built from an
  ESPnet enhancement model; the fast PyTorch path of ``enhance`` and the graph that is exported.
- :mod:`.streaming`: the causal frame-by-frame graph with explicit state, and a driver that
  accepts chunks of any length.
- :mod:`.onnx_export`: ONNX export and ONNX Runtime sessions.
"""
