//! XenStore handshake (std).
