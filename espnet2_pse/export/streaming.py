"""Causal models as a stream: a frame-by-frame graph with explicit state, and its driver.

:class:`StreamingEnhancer` is one step of the stream, (B, K * hop) samples of the padded
input stream plus the state tensors -> (B, K * hop) final output samples plus the new state.
The state is everything a step carries over: the last input samples and the open
overlap-add tails of the front end (and the squared-window envelope for an STFT), every TCN
block's depthwise history and the running sums of the cumulative norms (cLN). It exports to
ONNX as it is (see :mod:`espnet2_pse.export.onnx_export`), with the state names and sizes
in a :class:`StreamSpec` that is stored in the ONNX metadata.

:class:`StreamSession` feeds a step with chunks of any length (10 ms, 16 ms, 20 ms, ...): it
pads the start of the stream like the whole-signal model (the STFT's reflect padding, which
needs n_fft // 2 + 1 samples before the first frame), buffers to whole hops, drops the
output samples that belong to the padding, and on :meth:`StreamSession.finish` pads the end
and flushes the overlap-add tail, so that the concatenated outputs equal the whole-signal
model's output sample for sample (up to float rounding).
"""

import dataclasses
import json
from typing import Callable, List, Tuple

import numpy as np
import torch

from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError
from espnet2_pse.export.fused_tcn import FusedTCN

Step = Callable[[np.ndarray, List[np.ndarray]], Tuple[np.ndarray, List[np.ndarray]]]


@dataclasses.dataclass
class StreamSpec:
    """What a caller of the step needs to know; JSON in the exported model's metadata.

    hop: samples per frame step; tail: samples of ``in_tail`` (the first ``tail`` samples of
    the padded stream initialise it); start_padding: reflect-padded samples before sample 0
    (and output samples to drop); state_names / state_shapes (-1: the batch axis) /
    state_dtypes: the state tensors after the audio, in order; latency_samples and
    sample_rate: the algorithmic latency.
    """

    hop: int
    tail: int
    start_padding: int
    state_names: List[str]
    state_shapes: List[List[int]]
    state_dtypes: List[str]
    latency_samples: int
    sample_rate: int

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StreamSpec":
        return cls(**json.loads(text))


class StreamingEnhancer(torch.nn.Module):
    """One step of a causal :class:`FastEnhancer` on a stream (DFT bases, no torch.stft).

    forward(hops (B, K * hop), *states) -> (out (B, K * hop), *new_states), states in the
    order of ``spec.state_names``. Output sample j of the step sequence is sample
    j - start_padding of the enhanced signal.

    Raises:
        UnsupportedModelError: non-causal model (the reason is named), input-variance
            normalisation (needs the whole signal), or a front end with nothing to overlap.
    """

    def __init__(self, fast: FastEnhancer, sample_rate: int = 16000):
        super().__init__()
        if not isinstance(fast.mask_net, FusedTCN):
            name = type(getattr(fast.mask_net, "separator", fast.mask_net)).__name__
            raise UnsupportedModelError(f"streaming export supports conv_tasnet_skip separators, not {name}")
        if not fast.causal:
            raise UnsupportedModelError(
                "the model is not causal (its separator looks at future frames: causal: false, "
                "or a global/batch norm); streaming needs causal: true with cLN or chLN"
            )
        if fast.normalize_variance:
            raise UnsupportedModelError("normalize_variance scales by the whole signal's std; it cannot stream")
        if fast.frontend.tail <= 0:
            raise UnsupportedModelError("streaming needs frames longer than the hop (kernel_size > stride)")
        self.frontend, self.mask_net = fast.frontend, fast.mask_net
        self.frontend_names = list(self.frontend.stream_state_shapes(1))
        one, two = ({**self.frontend.stream_state_shapes(b), **self.mask_net.state_shapes(b)} for b in (1, 2))
        self.spec = StreamSpec(
            hop=self.frontend.hop,
            tail=self.frontend.tail,
            start_padding=self.frontend.start_padding,
            state_names=list(one),
            # An axis that grows with the batch is the batch axis (-1); the frame count is shared.
            state_shapes=[[-1 if a != b else a for a, b in zip(one[k][0], two[k][0])] for k in one],
            state_dtypes=[str(dtype).replace("torch.", "") for _, dtype in one.values()],
            latency_samples=self.frontend.latency_samples(),
            sample_rate=int(sample_rate),
        )

    def initial_states(self, padded_start: torch.Tensor) -> List[torch.Tensor]:
        """States before the first step, given the first ``tail`` padded samples (B, tail)."""
        state = {**self.frontend.initial_stream_state(padded_start),
                 **self.mask_net.initial_state(padded_start.shape[0])}
        return [state[name] for name in self.spec.state_names]

    def forward(self, hops: torch.Tensor, *states: torch.Tensor):
        state = dict(zip(self.spec.state_names, states))
        coded, magnitude, analysis_state = self.frontend.analyze_stream(hops, state)
        tcn_state = {k: v for k, v in state.items() if k not in self.frontend_names}
        mask, tcn_state = self.mask_net(magnitude, tcn_state)
        out, synthesis_state = self.frontend.synthesize_stream(coded, mask, state)
        new = {**analysis_state, **synthesis_state, **tcn_state}
        return (out, *[new[name] for name in self.spec.state_names])


def initial_state_arrays(spec: StreamSpec, padded_start: np.ndarray) -> List[np.ndarray]:
    """The states of :meth:`StreamingEnhancer.initial_states` as numpy, from the spec alone."""
    batch = padded_start.shape[0]
    states = []
    for name, shape, dtype in zip(spec.state_names, spec.state_shapes, spec.state_dtypes):
        if name == "in_tail":
            states.append(padded_start.astype(np.float32))
        else:
            states.append(np.zeros([batch if a == -1 else a for a in shape], dtype=dtype))
    return states


def torch_step(model: StreamingEnhancer) -> Step:
    """A :data:`Step` that runs the PyTorch module."""

    def step(hops: np.ndarray, states: List[np.ndarray]):
        with torch.inference_mode():
            outs = model(torch.from_numpy(hops), *[torch.from_numpy(s) for s in states])
        return outs[0].numpy(), [o.numpy() for o in outs[1:]]

    return step


class StreamSession:
    """Enhance a stream pushed in chunks of any length; see the module docstring.

    Args:
        step: a :data:`Step` (PyTorch via :func:`torch_step`, or ONNX Runtime).
        spec: the step's :class:`StreamSpec`.

    ``push(chunk)`` takes (n,) or (B, n) float samples and returns the (B, m) or (m,) output
    samples that became final (m may be 0); ``finish()`` returns the rest, so that all outputs
    together have as many samples as all inputs.
    """

    def __init__(self, step: Step, spec: StreamSpec):
        self.step, self.spec = step, spec
        self.raw = None  # signal samples before the stream could start (B, n)
        self.pending = None  # padded-stream samples waiting for a whole hop (B, n)
        self.states: List[np.ndarray] = []
        self.received = self.emitted = 0
        self.to_drop = spec.start_padding
        self.last_raw = None  # the last start_padding + 1 input samples, for the end padding
        self.squeeze = False

    @property
    def start_needs(self) -> int:
        """Input samples needed before the first step (reflect padding and the first tail)."""
        pad = self.spec.start_padding
        return max(pad + 1 if pad else 0, self.spec.tail - pad)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        self.squeeze = chunk.ndim == 1
        chunk = chunk[None] if self.squeeze else chunk
        self.received += chunk.shape[1]
        keep = self.spec.start_padding + 1
        joined = chunk if self.last_raw is None else np.concatenate([self.last_raw, chunk], axis=1)
        self.last_raw = joined[:, -keep:]
        if not self.states:
            self.raw = chunk if self.raw is None else np.concatenate([self.raw, chunk], axis=1)
            if self.raw.shape[1] < self.start_needs:
                return self._shape(np.zeros((chunk.shape[0], 0), np.float32))
            pad = self.spec.start_padding
            padded = np.concatenate([self.raw[:, pad:0:-1], self.raw], axis=1)
            self.states = initial_state_arrays(self.spec, padded[:, : self.spec.tail])
            self.pending, self.raw = padded[:, self.spec.tail :], None
        else:
            self.pending = np.concatenate([self.pending, chunk], axis=1)
        return self._shape(self._run())

    def _run(self) -> np.ndarray:
        hops = self.pending.shape[1] // self.spec.hop
        if hops == 0:
            return np.zeros((self.pending.shape[0], 0), np.float32)
        out, self.states = self.step(self.pending[:, : hops * self.spec.hop], self.states)
        self.pending = self.pending[:, hops * self.spec.hop :]
        return self._emit(out)

    def _emit(self, out: np.ndarray) -> np.ndarray:
        drop = min(self.to_drop, out.shape[1])
        self.to_drop -= drop
        out = out[:, drop:]
        self.emitted += out.shape[1]
        return out

    def finish(self) -> np.ndarray:
        """End of the stream: pad the end as the whole-signal model does, flush the tails."""
        if not self.states:
            raise ValueError(
                f"stream too short: {self.received} samples, at least {self.start_needs} needed"
            )
        pad = self.spec.start_padding
        if pad:  # reflect padding at the end: x[T - 2], x[T - 3], ..., x[T - 1 - pad]
            self.pending = np.concatenate([self.pending, self.last_raw[:, -2::-1][:, :pad]], axis=1)
        pieces = [self._run()]
        names = self.spec.state_names
        tail = self.states[names.index("ola_tail")]
        if "env_tail" in names:
            tail = tail / np.maximum(self.states[names.index("env_tail")], 1e-11)
        pieces.append(self._emit(tail.astype(np.float32)))
        out = np.concatenate(pieces, axis=1)
        # Keep exactly as many samples as came in; the conv decoder's last samples are zeros.
        excess = self.emitted - self.received
        if excess > 0:
            out = out[:, : out.shape[1] - excess]
        elif excess < 0:
            out = np.pad(out, ((0, 0), (0, -excess)))
        self.emitted = self.received
        self.states = []
        return self._shape(out)

    def _shape(self, out: np.ndarray) -> np.ndarray:
        return out[0] if self.squeeze else out
