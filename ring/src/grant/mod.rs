//! Grant-table ABI (`xen/grant_table.h`, v1 entries) and the traits split drivers
//! program against for sharing pages with a peer domain.
//!
//! The granting side writes [`GrantEntryV1`]s into its own grant table; the using side
//! never touches those pages directly but asks the platform (the hypervisor, or the
//! shared-memory emulation in `xennet-platform`) to copy or map through a grant.
//! The batched copy operation is Xen's own `struct gnttab_copy`, so a real hypervisor
//! implementation hands the array straight to `GNTTABOP_copy`.

pub mod flags;

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::page::{Frame, PAGE_SIZE};

/// A domain identifier (`domid_t`). Domain 0 is the default driver domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DomId(pub u16);

impl DomId {
    /// Domain 0: the privileged domain, the default driver domain.
    pub const DOM0: DomId = DomId(0);
    /// `DOMID_SELF`: the calling domain.
    pub const SELF: DomId = DomId(0x7FF0);
    /// `DOMID_FIRST_RESERVED`: ids from here on are special (DOMID_SELF, DOMID_IO, ...),
    /// so guests are domains 1 up to this, exclusive.
    pub const FIRST_RESERVED: u16 = 0x7FF0;

    /// Checks that `id` names a guest: 1 up to [`DomId::FIRST_RESERVED`] (exclusive).
    pub fn guest(id: u16) -> Result<DomId, BadDomId> {
        match id {
            0 => Err(BadDomId::DriverDomain),
            id if id >= Self::FIRST_RESERVED => Err(BadDomId::Reserved(id)),
            id => Ok(DomId(id)),
        }
    }
}

/// Why a domain id does not name a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadDomId {
    /// Domain 0, the driver domain.
    DriverDomain,
    /// At or above `DOMID_FIRST_RESERVED`.
    Reserved(u16),
}

impl core::fmt::Display for BadDomId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BadDomId::DriverDomain => write!(f, "domain 0 is the driver domain, not a guest"),
            BadDomId::Reserved(id) => write!(
                f,
                "domain id {id} is reserved: guests are 1..={}",
                DomId::FIRST_RESERVED - 1
            ),
        }
    }
}

impl core::fmt::Display for DomId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A grant reference (`grant_ref_t`): an index into the granting domain's grant table.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

impl core::fmt::Display for GrantRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A handle returned by a grant map, needed to unmap (`grant_handle_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrantHandle(pub u32);

bitflags! {
    /// `GTF_*` flags of a v1 grant entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GrantFlags: u16 {
        /// `GTF_permit_access`: the named domain may map/copy the frame.
        const PERMIT_ACCESS = 1;
        /// `GTF_accept_transfer` (type 2; not used by xennet).
        const ACCEPT_TRANSFER = 2;
        /// `GTF_readonly`: the grantee may only read.
        const READONLY = 1 << 2;
        /// `GTF_reading`: set by the hypervisor while the grantee reads.
        const READING = 1 << 3;
        /// `GTF_writing`: set by the hypervisor while the grantee writes.
        const WRITING = 1 << 4;
        /// `GTF_PWT`.
        const PWT = 1 << 5;
        /// `GTF_PCD`.
        const PCD = 1 << 6;
        /// `GTF_PAT`.
        const PAT = 1 << 7;
        /// `GTF_sub_page`.
        const SUB_PAGE = 1 << 8;
    }
}

impl GrantFlags {
    /// `GTF_type_mask`.
    pub const TYPE_MASK: u16 = 3;
    /// `GTF_invalid`.
    pub const INVALID: u16 = 0;
}

/// A v1 grant-table entry (`struct grant_entry_v1`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags, see [`GrantFlags`].
    pub flags: u16,
    /// The domain allowed to use the grant.
    pub domid: u16,
    /// The granted frame.
    pub frame: u32,
}

/// Grant entries per 4096-byte grant-table page.
pub const GRANT_ENTRIES_PER_PAGE: usize = PAGE_SIZE / core::mem::size_of::<GrantEntryV1>();

/// Number of grant references reserved by Xen's toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;

/// A `GNTST_*` status code as returned by grant operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum GrantStatus {
    /// `GNTST_okay`.
    Okay = 0,
    /// `GNTST_general_error`.
    GeneralError = -1,
    /// `GNTST_bad_domain`.
    BadDomain = -2,
    /// `GNTST_bad_gntref`.
    BadGntref = -3,
    /// `GNTST_bad_handle`.
    BadHandle = -4,
    /// `GNTST_bad_virt_addr`.
    BadVirtAddr = -5,
    /// `GNTST_bad_dev_addr`.
    BadDevAddr = -6,
    /// `GNTST_no_device_space`.
    NoDeviceSpace = -7,
    /// `GNTST_permission_denied`.
    PermissionDenied = -8,
    /// `GNTST_bad_page`.
    BadPage = -9,
    /// `GNTST_bad_copy_arg`: copy arguments cross a page boundary.
    BadCopyArg = -10,
    /// `GNTST_address_too_big`.
    AddressTooBig = -11,
    /// `GNTST_eagain`.
    Eagain = -12,
    /// `GNTST_no_space`.
    NoSpace = -13,
}

impl GrantStatus {
    /// The raw `GNTST_*` value.
    pub const fn raw(self) -> i16 {
        self as i16
    }

    /// Decode a raw status; unknown values map to [`GrantStatus::GeneralError`].
    pub const fn from_raw(raw: i16) -> GrantStatus {
        match raw {
            0 => GrantStatus::Okay,
            -2 => GrantStatus::BadDomain,
            -3 => GrantStatus::BadGntref,
            -4 => GrantStatus::BadHandle,
            -5 => GrantStatus::BadVirtAddr,
            -6 => GrantStatus::BadDevAddr,
            -7 => GrantStatus::NoDeviceSpace,
            -8 => GrantStatus::PermissionDenied,
            -9 => GrantStatus::BadPage,
            -10 => GrantStatus::BadCopyArg,
            -11 => GrantStatus::AddressTooBig,
            -12 => GrantStatus::Eagain,
            -13 => GrantStatus::NoSpace,
            _ => GrantStatus::GeneralError,
        }
    }

    /// Xen's message for this status (`GNTTABOP_error_msgs`).
    pub const fn message(self) -> &'static str {
        match self {
            GrantStatus::Okay => "okay",
            GrantStatus::GeneralError => "undefined error",
            GrantStatus::BadDomain => "unrecognised domain id",
            GrantStatus::BadGntref => "invalid grant reference",
            GrantStatus::BadHandle => "invalid mapping handle",
            GrantStatus::BadVirtAddr => "invalid virtual address",
            GrantStatus::BadDevAddr => "invalid device address",
            GrantStatus::NoDeviceSpace => "no spare translation slot in the I/O MMU",
            GrantStatus::PermissionDenied => "permission denied",
            GrantStatus::BadPage => "bad page",
            GrantStatus::BadCopyArg => "copy arguments cross page boundary",
            GrantStatus::AddressTooBig => "page address size too large",
            GrantStatus::Eagain => "operation not done; try again",
            GrantStatus::NoSpace => "out of space",
        }
    }
}

impl core::fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GNTST {} ({})", self.raw(), self.message())
    }
}

/// `GNTCOPY_source_gref`: the source is a grant reference, not a local frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the destination is a grant reference, not a local frame.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;

/// One side of a grant copy (`struct gnttab_copy_ptr`), 16 bytes on 64-bit Xen ABIs.
///
/// `u` holds either a grant reference (low 32 bits) or a local frame number,
/// depending on the `GNTCOPY_*_gref` flag of the operation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// `union { grant_ref_t ref; xen_pfn_t gmfn; }`.
    pub u: u64,
    /// Domain owning the grant (for a gref) or `DOMID_SELF`/own id (for a frame).
    pub domid: u16,
    /// Byte offset in the page.
    pub offset: u16,
    /// Padding to the union's alignment (implicit in C).
    pub _pad: u32,
}

impl GnttabCopyPtr {
    /// A pointer through a grant reference of domain `domid`.
    pub const fn gref(gref: GrantRef, domid: DomId, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gref.0 as u64,
            domid: domid.0,
            offset,
            _pad: 0,
        }
    }

    /// A pointer into one of the caller's own frames.
    pub const fn local(frame: Frame, offset: u16) -> Self {
        GnttabCopyPtr {
            u: frame.0,
            domid: DomId::SELF.0,
            offset,
            _pad: 0,
        }
    }
}

/// One grant-copy operation (`struct gnttab_copy`), 40 bytes: Xen's own layout so that
/// a batch goes to `GNTTABOP_copy` unchanged.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopy {
    /// Where the bytes come from.
    pub source: GnttabCopyPtr,
    /// Where the bytes go.
    pub dest: GnttabCopyPtr,
    /// Number of bytes; `offset + len` must stay within the page on both sides.
    pub len: u16,
    /// `GNTCOPY_*` flags.
    pub flags: u16,
    /// Out: `GNTST_*` status of this operation.
    pub status: i16,
    /// Padding (implicit in C).
    pub _pad: u16,
}

impl GnttabCopy {
    /// Copy `len` bytes from a peer's grant into one of our frames.
    pub const fn from_grant(src: GnttabCopyPtr, dst: GnttabCopyPtr, len: u16) -> Self {
        GnttabCopy {
            source: src,
            dest: dst,
            len,
            flags: GNTCOPY_SOURCE_GREF,
            status: 0,
            _pad: 0,
        }
    }

    /// Copy `len` bytes from one of our frames into a peer's grant.
    pub const fn to_grant(src: GnttabCopyPtr, dst: GnttabCopyPtr, len: u16) -> Self {
        GnttabCopy {
            source: src,
            dest: dst,
            len,
            flags: GNTCOPY_DEST_GREF,
            status: 0,
            _pad: 0,
        }
    }

    /// The operation's status once performed.
    pub const fn status(&self) -> GrantStatus {
        GrantStatus::from_raw(self.status)
    }
}

/// Errors of the granting side's table operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// No free grant reference left in the table.
    TableFull,
    /// The reference is out of the table's range or not currently granted by us.
    BadRef(GrantRef),
    /// The peer still has the grant in use (GTF_reading/GTF_writing set, or mapped):
    /// access cannot end yet, exactly as in Xen.
    InUse(GrantRef),
    /// The frame is outside the domain's memory.
    BadFrame(Frame),
    /// A platform operation failed with this status.
    Status(GrantStatus),
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::TableFull => write!(f, "grant table full"),
            GrantError::BadRef(r) => write!(f, "grant ref {r} is not granted by this domain"),
            GrantError::InUse(r) => write!(f, "grant ref {r} is still in use by the peer"),
            GrantError::BadFrame(fr) => write!(f, "frame {} is outside domain memory", fr.0),
            GrantError::Status(s) => write!(f, "{s}"),
        }
    }
}

/// The granting side: the domain that owns pages and lets a peer use them.
///
/// Implemented by `xennet-platform` over a shared-memory grant table, or over the
/// domain's real grant table under Xen.
pub trait GrantAccess {
    /// Grant `domid` access to our `frame` (`gnttab_grant_foreign_access`).
    fn grant_access(
        &self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError>;

    /// End the peer's access (`gnttab_end_foreign_access_ref`). Fails with
    /// [`GrantError::InUse`] while the peer is copying through or mapping the grant;
    /// the reference then stays granted and the caller must retry later.
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantError>;
}

/// The using side's batched copy (`GNTTABOP_copy`).
pub trait GrantCopy {
    /// Perform every operation in `ops`, writing each one's `status`. The call itself
    /// fails only if the batch could not be attempted at all.
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus>;
}

/// The using side's map of a single granted page (`GNTTABOP_map_grant_ref`).
pub trait GrantMap {
    /// A mapping of one peer page; dropping it does not unmap, call [`GrantMap::unmap`].
    type Mapping: crate::memory::MappedPage;

    /// Map `gref` of `domid`; read-only if `readonly` (and must be, if the grant is).
    fn map(
        &self,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<Self::Mapping, GrantStatus>;

    /// Undo a mapping; the grant's in-use state is released.
    fn unmap(&self, mapping: Self::Mapping) -> Result<(), GrantStatus>;
}

impl<T: GrantAccess + ?Sized> GrantAccess for &T {
    fn grant_access(
        &self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        (**self).grant_access(domid, frame, readonly)
    }
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        (**self).end_access(gref)
    }
}

impl<T: GrantCopy + ?Sized> GrantCopy for &T {
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus> {
        (**self).grant_copy(ops)
    }
}

impl<T: GrantMap + ?Sized> GrantMap for &T {
    type Mapping = T::Mapping;
    fn map(
        &self,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<Self::Mapping, GrantStatus> {
        (**self).map(domid, gref, readonly)
    }
    fn unmap(&self, mapping: Self::Mapping) -> Result<(), GrantStatus> {
        (**self).unmap(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn abi_sizes_match_grant_table_h() {
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(size_of::<GnttabCopyPtr>(), 16);
        assert_eq!(size_of::<GnttabCopy>(), 40);
        assert_eq!(align_of::<GnttabCopy>(), 8);
        assert_eq!(GRANT_ENTRIES_PER_PAGE, 512);
    }

    #[test]
    fn status_round_trips() {
        for raw in -13..=0 {
            assert_eq!(GrantStatus::from_raw(raw).raw(), raw);
        }
        assert_eq!(GrantStatus::from_raw(-99), GrantStatus::GeneralError);
    }
}
