//! The tunnel's frame filter (`websocket::filter`) on hostile streams.

use crate::websocket::filter::{Filter, HEADROOM, TAILROOM};
use crate::websocket::frame;

/// `websocket_frames`: the first byte picks the direction (client or backend), whether an
/// extension was negotiated, and a read size; the rest is the stream. Invariants:
/// - the filter gives the same output and the same verdict however the stream is cut
///   into reads (frames cut at any byte are handled alike);
/// - what goes on is what a plain walk over the frames keeps: every frame up to a
///   violation, except a Close after the first (a peer gets one Close), with a data
///   frame cut by the end passed as far as it arrived and a header or control frame cut
///   by the end held back.
pub fn websocket_frames(data: &[u8]) {
    let Some((&knobs, stream)) = data.split_first() else { return };
    let from_client = knobs & 1 != 0;
    let extensions = knobs & 2 != 0;
    let chunk = usize::from(knobs >> 2).max(1);
    let (whole, whole_verdict) = run(from_client, extensions, stream, stream.len().max(1));
    let (cut, cut_verdict) = run(from_client, extensions, stream, chunk);
    assert_eq!(whole, cut, "output depends on how the stream was cut into reads of {chunk}");
    assert_eq!(whole_verdict, cut_verdict, "verdict depends on how the stream was cut");
    if whole_verdict.is_none() {
        assert_eq!(whole, kept_by_a_plain_walk(stream), "output differs from the frames the stream holds");
    } else {
        assert!(stream.len() >= whole.len(), "a violation added bytes");
    }
}

/// The model: walks `stream` frame by frame with nothing but the header reader.
fn kept_by_a_plain_walk(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut closed = false;
    while at < stream.len() {
        let Some(h) = frame::parse_header(&stream[at..]) else { break };
        let end = at.saturating_add(h.len).saturating_add(usize::try_from(h.payload_len).unwrap_or(usize::MAX));
        if h.is_control() {
            if end > stream.len() {
                break;
            }
            if h.opcode != frame::CLOSE || !closed {
                out.extend_from_slice(&stream[at..end]);
            }
            closed |= h.opcode == frame::CLOSE;
        } else {
            out.extend_from_slice(&stream[at..end.min(stream.len())]);
        }
        at = end;
    }
    out
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
