//! Binding listeners. Each worker thread gets its own socket on the same address with
//! SO_REUSEPORT, so the kernel spreads connections and no worker shares an accept
//! queue lock with another.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Apache's ListenBacklog and nginx's default on Linux.
const BACKLOG: i32 = 511;

/// Binds `addr`. `reuse_port` lets several workers bind the same address.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]` and `0.0.0.0` may both be listed; each binds only its own family.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
