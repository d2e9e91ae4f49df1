//! PURE. HTTP/1.1 message syntax: heads, framing, chunked coding, upgrade checks and the
//! heads and answers sidecar writes. Nothing here does I/O.

pub mod answer;
pub mod chunked;
pub mod framing;
pub mod head;
pub mod headers;
pub mod scan;
pub mod upgrade;
