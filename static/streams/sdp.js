// Offer edits the browser needs before it sends its offer.

// Ask for stereo Opus: browsers decode stereo only if their own offer says stereo=1.
export function requestStereoOpus(sdp) {
  const match = sdp.match(/a=rtpmap:(\d+) opus\/48000\/2/i);
  if (!match) return sdp;
  const pt = match[1];
  const fmtp = new RegExp(`a=fmtp:${pt} ([^\\r\\n]*)`);
  if (fmtp.test(sdp)) {
    return sdp.replace(fmtp, (line, params) =>
      /(^|;)\s*stereo=/.test(params) ? line : `a=fmtp:${pt} ${params};stereo=1;sprop-stereo=1`);
  }
  return sdp.replace(match[0], `${match[0]}\r\na=fmtp:${pt} stereo=1;sprop-stereo=1`);
}
