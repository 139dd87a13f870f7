//! XenStore: the `xs_wire.h` protocol, a daemon on unix sockets, and a client.
