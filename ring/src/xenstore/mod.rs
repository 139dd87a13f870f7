//! XenStore without std: the wire format of `xen/io/xs_wire.h`.
//!
//! - [`wire`]: header, message types, errno names, path rules (pure parsing; the
//!   socket client and the daemon in `xennet-xenstore` use the same code).

pub mod wire;
