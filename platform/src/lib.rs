//! # xennet-platform
//!
//! What Xen gives split drivers, two ways: [`shm`] emulates grant tables, event
//! channels and XenStore for plain Linux processes (and threads) sharing memory; the
//! `xen` feature implements the same traits with real hypercalls.
#![warn(missing_docs)]

pub mod shm {
    //! The plain-process platform (shared-memory files, eventfd doorbells, xenstored).
}
