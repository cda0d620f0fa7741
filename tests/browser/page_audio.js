// Evaluated in the demo page by tests/browser/driver.py: what a browser listener hears.
// Analyses the slot carrying `identity` with a WebAudio AnalyserNode (the demo page has
// already attached the slot to an <audio> element: without one WebAudio reads silence)
// and samples the slot receiver's RTP audio levels (getSynchronizationSources).
async ({ identity, ms }) => {
  const client = window.podiumDemo.client;
  const slot = client.slotOf(identity);
  if (!slot) return { error: `no slot carries ${identity}` };
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(slot.stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const binHz = context.sampleRate / analyser.fftSize;
  const peaks = [];
  const rtpLevels = [];
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    analyser.getFloatFrequencyData(bins);
    let best = Math.ceil(50 / binHz);
    for (let i = best; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    // Parabolic interpolation between the neighbouring bins (dB values).
    const [a, b, c] = [bins[best - 1], bins[best], bins[best + 1]];
    const shift = Number.isFinite(a + b + c) && a - 2 * b + c !== 0 ? (0.5 * (a - c)) / (a - 2 * b + c) : 0;
    peaks.push({ hz: (best + shift) * binHz, db: b });
    const sources = slot.receiver.getSynchronizationSources();
    rtpLevels.push(sources.length ? sources[0].audioLevel ?? null : null);
  }
  source.disconnect();
  await context.close();
  const stats = {};
  for (const report of (await slot.receiver.getStats()).values()) {
    if (report.type === "inbound-rtp") {
      stats.packetsReceived = report.packetsReceived;
      stats.audioLevel = report.audioLevel;
      stats.totalAudioEnergy = report.totalAudioEnergy;
      stats.codecId = report.codecId;
    }
  }
  return { sampleRate: context.sampleRate, peaks, rtpLevels, stats };
}
