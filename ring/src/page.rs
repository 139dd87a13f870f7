//! Pages and frames: the unit every grant, ring and buffer is made of.

/// Size of a page, of a grant, and of a shared ring's unit.
pub const PAGE_SIZE: usize = 4096;

/// A frame number in a domain's memory (`xen_pfn_t`): page index of its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Frame(pub u64);
