//! Sockets: streams and buffered connections, the TLS stream, listeners, backend
//! connects, the pool.

pub mod buffers;
pub mod clock;
pub mod connect;
pub mod listen;
pub mod pool;
pub mod stream;
pub mod tls_stream;

#[cfg(test)]
pub(crate) mod test_sockets {
    //! Loopback socket pairs for unit tests of code that relays bytes.

    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use crate::rt::{Io, Ready};
    use socket2::SockRef;

    /// A connected loopback pair with 2 MiB buffers, the first end async.
    pub fn pair() -> (Io<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let near = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (far, _) = listener.accept().expect("accept");
        for s in [&near, &far] {
            let _ = SockRef::from(s).set_recv_buffer_size(2 << 20);
            let _ = SockRef::from(s).set_send_buffer_size(2 << 20);
        }
        near.set_nonblocking(true).expect("nonblocking");
        (Io::new(near, Ready::EMPTY).expect("async"), far)
    }

    /// Writes `len` bytes of `byte` at `far` and waits (at most 5 s) until all of them
    /// are readable at `near` at once, as from a peer that sends faster than sidecar
    /// relays.
    pub fn fill(far: &mut TcpStream, near: &Io<TcpStream>, byte: u8, len: usize) {
        far.write_all(&vec![byte; len]).expect("fill the socket");
        let mut peek = vec![0u8; len];
        let end = Instant::now() + Duration::from_secs(5);
        while near.get_ref().peek(&mut peek).unwrap_or(0) < len && Instant::now() < end {
            std::thread::yield_now();
        }
    }
}
