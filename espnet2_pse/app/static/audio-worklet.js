// Audio worklets of pse-app: "capture" posts the microphone's samples to the page (and outputs
// silence), "player" plays the enhanced samples the page posts to it, in order, as they come.
"use strict";

class Capture extends AudioWorkletProcessor {
  process(inputs, outputs) {
    const channel = inputs[0][0];
    if (channel) this.port.postMessage(channel.slice());
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;  // samples of queue[0] already played
    this.port.onmessage = (event) => { if (event.data.length) this.queue.push(event.data); };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
    }
    out.fill(0, written);  // an underrun plays silence
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);
