//! The demo replicas' WebSocket echo (RFC 6455 §5, server side): frames read and
//! written, text and binary messages echoed with the replica's name, pings answered,
//! a close answered and the connection ended. It stands in for an application; frame
//! headers are read and control frames written by `websocket::frame`, as in the proxy.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::websocket::frame::{self, Header, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};

/// A larger message is refused with close code 1009 (too big): the page sends a line.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Close codes (RFC 6455 §7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const TOO_BIG: u16 = 1009;

/// PURE. The payload length of a client frame a server accepts, or the close code it
/// answers one it must refuse with.
fn accept(h: &Header) -> Result<usize, u16> {
    // §5.1: a client masks every frame; §5.2: no extension was negotiated.
    let known = matches!(h.opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG);
    if h.mask.is_none() || h.rsv != 0 || !known {
        return Err(PROTOCOL_ERROR);
    }
    // §5.5: control frames are short and never fragmented.
    if h.is_control() && (h.payload_len > frame::MAX_CONTROL_PAYLOAD as u64 || !h.fin) {
        return Err(PROTOCOL_ERROR);
    }
    usize::try_from(h.payload_len).ok().filter(|&l| l <= MAX_MESSAGE_BYTES).ok_or(TOO_BIG)
}

/// PURE. A server data frame (unmasked, §5.1) with `payload`; control frames are
/// `frame::write_control`'s.
fn data_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
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

fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_control(&mut out, opcode, payload, None);
    out
}

fn close_frame(code: u16) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_close(&mut out, code, "", None);
    out
}

/// Echoes messages on `stream` (after the 101) until the client closes or errs.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(n: u32, mut stream: S) {
    let mut buf = Vec::new();
    // A message being assembled from fragments: its opcode and bytes so far.
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let head = frame::parse_header(&buf).map(|h| accept(&h).map(|len| (h, len))).transpose();
        let (head, len) = match head {
            Ok(Some((h, len))) if buf.len() >= h.len + len => (h, len),
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
        let mut payload: Vec<u8> = buf.drain(..head.len + len).skip(head.len).collect();
        frame::apply_mask(&mut payload, head.mask.unwrap_or_default());
        let reply = match head.opcode {
            PING => Some(control_frame(PONG, &payload)),
            PONG => None,
            CLOSE => {
                // §5.5.1: answer with the status code received, then end the connection.
                let _ = stream.write_all(&control_frame(CLOSE, payload.get(..2).unwrap_or_default())).await;
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
                    Some(Ok(text)) => Some(data_frame(TEXT, format!("replica {n} echoes: {text}").as_bytes())),
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
        let mut out = data_frame(opcode, payload);
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
    fn accepts_what_a_server_may_read() {
        let head = |b: &[u8]| frame::parse_header(b).expect("a whole header");
        for (bytes, want) in [
            (client(true, TEXT, b"Hello"), Ok(5)),
            (client(false, BINARY, &[b'x'; 300]), Ok(300)),
            (client(true, PING, b""), Ok(0)),
            (client(true, CLOSE, &[0x03, 0xE8]), Ok(2)),
            (data_frame(TEXT, b"Hello"), Err(PROTOCOL_ERROR)), // unmasked
            (vec![0xC1, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // RSV1 without an extension
            (vec![0x83, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // reserved opcode
            (vec![0x09, 0x80, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // fragmented ping
            (vec![0x89, 0xFE, 0, 126, 0, 0, 0, 0], Err(PROTOCOL_ERROR)), // ping over 125 bytes
            (vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0], Err(TOO_BIG)),
            (vec![0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], Err(TOO_BIG)),
        ] {
            assert_eq!(accept(&head(&bytes)), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn writes_data_frames_in_every_length_form() {
        assert_eq!(data_frame(TEXT, b"Hello"), b"\x81\x05Hello");
        assert_eq!(data_frame(BINARY, &[0; 126])[..4], [0x82, 126, 0, 126]);
        assert_eq!(data_frame(BINARY, &[0; 70_000])[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        for len in [0, 125, 126, 65_535, 65_536] {
            let f = data_frame(BINARY, &vec![7; len]);
            let h = frame::parse_header(&f).expect("a header");
            assert_eq!(
                (h.fin, h.opcode, h.mask, h.payload_len, f.len() - h.len),
                (true, BINARY, None, len as u64, len)
            );
        }
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
        let mut want = data_frame(TEXT, b"replica 7 echoes: hello");
        want.extend(control_frame(PONG, b"p"));
        want.extend(data_frame(TEXT, b"replica 7 echoes: fragmented"));
        want.extend(data_frame(TEXT, b"replica 7 echoes: bytes"));
        want.extend(close_frame(1000));
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_broken_streams_with_a_close_code() {
        for (frames, code) in [
            (vec![data_frame(TEXT, b"unmasked")], PROTOCOL_ERROR),
            (vec![client(true, CONTINUATION, b"of nothing")], PROTOCOL_ERROR),
            (vec![client(false, TEXT, b"a"), client(true, TEXT, b"b")], PROTOCOL_ERROR),
            (vec![client(false, TEXT, &[b'a'; 40_000]), client(true, CONTINUATION, &[b'b'; 40_000])], TOO_BIG),
        ] {
            assert_eq!(exchange(&frames), close_frame(code), "{code}");
        }
    }
}
