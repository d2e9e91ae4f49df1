//! RFC 6455 frame headers (section 5.2): reading one from the front of a byte stream,
//! and writing the small control frames (Ping, Close) the proxy sends on its own.
//! Payloads are never touched here except a control frame's, which is at most 125
//! bytes.

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask key.
pub const MAX_HEADER: usize = 14;
/// A control frame's payload limit (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest control frame a peer may send: any header form with 125 payload bytes.
pub const MAX_CONTROL_FRAME: usize = MAX_HEADER + MAX_CONTROL_PAYLOAD;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame's header as it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Header bytes, payload excluded.
    pub len: usize,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads the header at the start of `b`; `None` until all of it has arrived. A 64-bit
/// length with its top bit set is returned as is: judging it is the caller's job.
pub fn parse_header(b: &[u8]) -> Option<Header> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (payload_len, at) = match b1 & 0x7F {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let (mask, len) = if masked { (Some(b.get(at..at + 4)?.try_into().ok()?), at + 4) } else { (None, at) };
    Some(Header { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0xF, mask, payload_len, len })
}

/// Unmasks (or masks: the operation is its own inverse) `payload` in place.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends a control frame (FIN set) to `out`, masked with `mask` when given (frames
/// to a server must be masked, frames to a client must not). `payload` is cut to 125
/// bytes.
pub fn write_control(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    out.push(0x80 | opcode);
    out.push(if mask.is_some() { 0x80 } else { 0 } | payload.len() as u8);
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m);
    }
}

/// Appends a Close frame with `code` and `reason` (cut so the payload fits in 125 bytes,
/// on a character boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_control(out, CLOSE, &payload[..2 + end], mask);
}

/// The status code of a Close frame's (unmasked) payload, if it has one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_length_form_are_read_once_complete() {
        let mask = [1, 2, 3, 4];
        for (bytes, want) in [
            (&[0x81, 0x05][..], Header { fin: true, rsv: 0, opcode: TEXT, mask: None, payload_len: 5, len: 2 }),
            (
                &[0x02, 0x85, 1, 2, 3, 4][..],
                Header { fin: false, rsv: 0, opcode: BINARY, mask: Some(mask), payload_len: 5, len: 6 },
            ),
            (
                &[0xC2, 126, 0x01, 0x00][..],
                Header { fin: true, rsv: 4, opcode: BINARY, mask: None, payload_len: 256, len: 4 },
            ),
            (
                &[0x80, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4][..],
                Header { fin: true, rsv: 0, opcode: CONTINUATION, mask: Some(mask), payload_len: 1 << 32, len: 14 },
            ),
            (&[0x89, 0x00][..], Header { fin: true, rsv: 0, opcode: PING, mask: None, payload_len: 0, len: 2 }),
        ] {
            assert_eq!(parse_header(bytes), Some(want), "{bytes:?}");
            for cut in 0..bytes.len() {
                assert_eq!(parse_header(&bytes[..cut]), None, "{bytes:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn control_frames_are_written_masked_or_not_and_read_back() {
        for mask in [None, Some([0xA, 0xB, 0xC, 0xD])] {
            let mut out = Vec::new();
            write_close(&mut out, 1001, "going away", mask);
            let h = parse_header(&out).expect("a whole header");
            assert_eq!((h.fin, h.opcode, h.mask, h.payload_len as usize), (true, CLOSE, mask, 12));
            let mut payload = out[h.len..].to_vec();
            if let Some(m) = h.mask {
                apply_mask(&mut payload, m);
            }
            assert_eq!(close_code(&payload), Some(1001));
            assert_eq!(&payload[2..], b"going away");
        }
    }

    #[test]
    fn a_long_close_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(100);
        let mut out = Vec::new();
        write_close(&mut out, 1012, &reason, None);
        let h = parse_header(&out).expect("header");
        assert!(h.payload_len as usize <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&out[h.len + 2..]).is_ok());
    }
}
