//! The demo replicas' WebSocket echo (RFC 6455 §5, server side): frames read and
//! written, text and binary messages echoed with the replica's name, pings answered,
//! a close answered and the connection ended. It stands in for an application; the
//! proxy itself never looks inside a tunnel.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A larger message is refused with close code 1009 (too big): the page sends a line.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes (RFC 6455 §7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const TOO_BIG: u16 = 1009;

/// A frame's first bytes, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    len: usize,
    mask: [u8; 4],
    /// Bytes of header before the payload.
    header_len: usize,
}

/// PURE. Decodes the head of a client frame at the start of `buf`: `Ok(None)` until
/// enough bytes are there, `Err(close code)` for a frame a server must refuse.
fn parse_head(buf: &[u8]) -> Result<Option<FrameHead>, u16> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
    let (masked, len7) = (b1 & 0x80 != 0, b1 & 0x7F);
    // §5.1: a client masks every frame; §5.2: no extension was negotiated.
    if !masked || rsv != 0 || !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(PROTOCOL_ERROR);
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let len = match ext {
        0 => u64::from(len7),
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        _ => u64::from_be_bytes([buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9]]),
    };
    // §5.5: control frames are short and never fragmented.
    if opcode >= CLOSE && (len > 125 || !fin) {
        return Err(PROTOCOL_ERROR);
    }
    let len = usize::try_from(len).ok().filter(|&l| l <= MAX_MESSAGE_BYTES).ok_or(TOO_BIG)?;
    let m = &buf[2 + ext..header_len];
    Ok(Some(FrameHead { fin, opcode, len, mask: [m[0], m[1], m[2], m[3]], header_len }))
}

/// PURE. A server frame (unmasked, §5.1) with `payload`.
fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn close_frame(code: u16) -> Vec<u8> {
    encode(CLOSE, &code.to_be_bytes())
}

/// Echoes messages on `stream` (after the 101) until the client closes or errs.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(n: u32, mut stream: S) {
    let mut buf = Vec::new();
    // A message being assembled from fragments: its opcode and bytes so far.
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let head = match parse_head(&buf) {
            Ok(Some(h)) if buf.len() >= h.header_len + h.len => h,
            Ok(_) => {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(got) => buf.extend_from_slice(&chunk[..got]),
                }
                continue;
            }
            Err(code) => {
                let _ = stream.write_all(&close_frame(code)).await;
                return;
            }
        };
        let mut payload: Vec<u8> = buf.drain(..head.header_len + head.len).skip(head.header_len).collect();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= head.mask[i % 4];
        }
        let reply = match head.opcode {
            PING => Some(encode(PONG, &payload)),
            PONG => None,
            CLOSE => {
                // §5.5.1: answer with the status code received, then end the connection.
                let _ = stream.write_all(&encode(CLOSE, payload.get(..2).unwrap_or_default())).await;
                return;
            }
            opcode => {
                match (&mut message, opcode) {
                    (None, TEXT | BINARY) => message = Some((opcode, payload)),
                    (Some((_, bytes)), CONTINUATION) if bytes.len() + payload.len() <= MAX_MESSAGE_BYTES => {
                        bytes.extend_from_slice(&payload)
                    }
                    (Some(_), CONTINUATION) => {
                        let _ = stream.write_all(&close_frame(TOO_BIG)).await;
                        return;
                    }
                    // A new message inside a fragmented one, or a continuation of nothing.
                    _ => {
                        let _ = stream.write_all(&close_frame(PROTOCOL_ERROR)).await;
                        return;
                    }
                }
                if !head.fin {
                    continue;
                }
                // Binary messages that are UTF-8 are echoed too; others are skipped.
                match message.take().map(|(_, bytes)| String::from_utf8(bytes)) {
                    Some(Ok(text)) => Some(encode(TEXT, format!("replica {n} echoes: {text}").as_bytes())),
                    _ => None,
                }
            }
        };
        if let Some(frame) = reply {
            if stream.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    use async_io::Async;

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    /// A client frame: masked with `MASK`.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = encode(opcode, payload);
        let at = out.len() - payload.len();
        out[0] = if fin { out[0] } else { out[0] & 0x7F };
        out[1] |= 0x80;
        out.splice(at..at, MASK);
        for (i, b) in out[at + 4..].iter_mut().enumerate() {
            *b ^= MASK[i % 4];
        }
        out
    }

    #[test]
    fn parses_frame_heads() {
        let head = |fin, opcode, len, header_len| Ok(Some(FrameHead { fin, opcode, len, mask: MASK, header_len }));
        let long = vec![b'x'; 300];
        for (bytes, want) in [
            (client(true, TEXT, b"Hello"), head(true, TEXT, 5, 6)),
            (client(false, BINARY, &long), head(false, BINARY, 300, 8)),
            (client(true, PING, b""), head(true, PING, 0, 6)),
            (client(true, TEXT, b"Hello")[..1].to_vec(), Ok(None)),
            (client(true, TEXT, b"Hello")[..5].to_vec(), Ok(None)),
            (encode(TEXT, b"Hello"), Err(PROTOCOL_ERROR)),       // unmasked
            (vec![0xC1, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // RSV1 without an extension
            (vec![0x83, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // reserved opcode
            (vec![0x09, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // fragmented ping
            (vec![0x89, 0xFE, 0, 126, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // ping over 125 bytes
            (vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0], Err(TOO_BIG)),
            (vec![0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], Err(TOO_BIG)),
        ] {
            assert_eq!(parse_head(&bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn encodes_server_frames() {
        assert_eq!(encode(TEXT, b"Hello"), b"\x81\x05Hello");
        assert_eq!(encode(PONG, b""), b"\x8a\x00");
        assert_eq!(encode(BINARY, &[0; 126])[..4], [0x82, 126, 0, 126]);
        assert_eq!(encode(BINARY, &[0; 70_000])[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    /// Sends `frames` to an echo task over loopback and returns all it wrote until it
    /// closed the connection (or 10 s passed).
    fn exchange(frames: &[Vec<u8>]) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut c = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        let (s, _) = listener.accept().expect("accept");
        let server = std::thread::spawn(move || async_io::block_on(echo(7, Async::new(s).expect("async"))));
        use std::io::{Read, Write};
        for f in frames {
            c.write_all(f).expect("write");
        }
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        // Ends the echo task even when it did not end the connection itself.
        drop(c);
        server.join().expect("echo task");
        out
    }

    #[test]
    fn echoes_messages_answers_pings_and_closes() {
        let got = exchange(&[
            client(true, TEXT, b"hello"),
            client(true, PING, b"p"),
            client(false, TEXT, b"frag"),
            client(true, PONG, b""),
            client(true, CONTINUATION, b"mented"),
            client(true, BINARY, b"bytes"),
            client(true, BINARY, &[0xFF, 0xFE]), // not UTF-8: skipped
            client(true, CLOSE, &1000u16.to_be_bytes()),
        ]);
        let mut want = encode(TEXT, b"replica 7 echoes: hello");
        want.extend(encode(PONG, b"p"));
        want.extend(encode(TEXT, b"replica 7 echoes: fragmented"));
        want.extend(encode(TEXT, b"replica 7 echoes: bytes"));
        want.extend(encode(CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_broken_streams_with_a_close_code() {
        for (frames, code) in [
            (vec![encode(TEXT, b"unmasked")], PROTOCOL_ERROR),
            (vec![client(true, CONTINUATION, b"of nothing")], PROTOCOL_ERROR),
            (vec![client(false, TEXT, b"a"), client(true, TEXT, b"b")], PROTOCOL_ERROR),
            (vec![client(false, TEXT, &[b'a'; 40_000]), client(true, CONTINUATION, &[b'b'; 40_000])], TOO_BIG),
        ] {
            assert_eq!(exchange(&frames), close_frame(code), "{code}");
        }
    }
}
