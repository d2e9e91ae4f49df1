//! Sockets: streams and buffered connections, listeners, backend connects, the pool.

pub mod clock;
pub mod connect;
pub mod listen;
pub mod pool;
pub mod stream;
