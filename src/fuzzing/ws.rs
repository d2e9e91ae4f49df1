//! The tunnel's frame filter (`websocket::filter`) on hostile streams.

use crate::websocket::filter::{Filter, HEADROOM, TAILROOM};

/// `websocket_frames`: the first byte picks the direction (client or backend), whether an
/// extension was negotiated, and a read size; the rest is the stream. Invariants:
/// - the filter gives the same output and the same verdict however the stream is cut
///   into reads (frames cut at any byte are handled alike);
/// - what goes on is a prefix of the stream: the filter never invents or reorders a
///   byte of a peer's, and drops only what follows a violation or a held partial frame;
/// - without a violation, everything up to the last whole frame goes on.
pub fn websocket_frames(data: &[u8]) {
    let Some((&knobs, stream)) = data.split_first() else { return };
    let from_client = knobs & 1 != 0;
    let extensions = knobs & 2 != 0;
    let chunk = usize::from(knobs >> 2).max(1);
    let (whole, whole_verdict) = run(from_client, extensions, stream, stream.len().max(1));
    let (cut, cut_verdict) = run(from_client, extensions, stream, chunk);
    assert_eq!(whole, cut, "output depends on how the stream was cut into reads of {chunk}");
    assert_eq!(whole_verdict, cut_verdict, "verdict depends on how the stream was cut");
    assert!(stream.starts_with(&whole), "the output is not a prefix of the stream");
    if whole_verdict.is_none() {
        // Only a frame still incomplete at the end may be held back.
        let held = stream.len() - whole.len();
        assert!(held <= crate::websocket::frame::MAX_CONTROL_FRAME, "{held} bytes held without a violation");
    }
}

fn run(from_client: bool, extensions: bool, stream: &[u8], chunk: usize) -> (Vec<u8>, Option<&'static str>) {
    let mut f = Filter::new(from_client, extensions);
    let mut out = Vec::new();
    let mut verdict = None;
    for piece in stream.chunks(chunk) {
        let mut buf = vec![0u8; HEADROOM + piece.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + piece.len()].copy_from_slice(piece);
        let range = f.scan(&mut buf, HEADROOM, HEADROOM + piece.len());
        out.extend_from_slice(&buf[range]);
        verdict = verdict.or(f.seen.violation);
    }
    (out, verdict)
}
