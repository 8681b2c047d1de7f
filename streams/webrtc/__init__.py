"""The WebRTC glue: SDP, ICE and DTLS policy, one listener's peer, the hub's send loop, and aiortc's internals behind one door (rtcinternals)."""
