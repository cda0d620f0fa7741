// Evaluated in the demo page by tests/browser/driver.py: the SDP the page's client
// exchanged, and what Chrome's getStats says about the transport and the uplink.
async () => {
  const describe = (c) => c && { address: c.address, type: c.candidateType, protocol: c.protocol };
  const pc = window.podiumDemo.client.pc;
  const result = {
    answer: pc.remoteDescription.sdp,
    offer: pc.localDescription.sdp,
    connectionState: pc.connectionState,
    transports: 0,
    pair: null,
  };
  const stats = await pc.getStats();
  const byId = new Map([...stats.values()].map((r) => [r.id, r]));
  for (const r of stats.values()) {
    if (r.type === "transport") {
      result.transports += 1;
      result.dtlsState = r.dtlsState;
      const pair = byId.get(r.selectedCandidatePairId);
      if (pair) {
        result.pair = {
          local: describe(byId.get(pair.localCandidateId)),
          remote: describe(byId.get(pair.remoteCandidateId)),
        };
      }
    }
    if (r.type === "outbound-rtp" && r.kind === "audio") {
      const codec = byId.get(r.codecId);
      result.outbound = {
        packetsSent: r.packetsSent,
        mimeType: codec?.mimeType,
        sdpFmtpLine: codec?.sdpFmtpLine,
        payloadType: codec?.payloadType,
      };
    }
  }
  return result;
}
