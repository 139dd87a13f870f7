//! Incremental Internet checksum updates (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! Rewriting one field of a header must not cost a pass over the whole packet, and
//! must keep a wrong checksum wrong (a router or NAT never repairs a corrupt packet).

/// Folds a 32-bit one's-complement accumulator into 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Returns the checksum after one 16-bit word covered by it changed from `old` to `new`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// Returns the checksum after a 32-bit value (e.g. an IPv4 address) covered by it
/// changed from `old` to `new`.
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Reads a big-endian u16 at `at`, if the slice is long enough.
pub fn get16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Writes a big-endian u16 at `at`; returns false (writing nothing) if out of range.
pub fn put16(buf: &mut [u8], at: usize, v: u16) -> bool {
    match at.checked_add(2).and_then(|end| buf.get_mut(at..end)) {
        Some(b) => {
            b.copy_from_slice(&v.to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            sum += u32::from(w);
        }
        !fold(sum)
    }

    #[test]
    fn incremental_update_matches_full_recomputation() {
        let mut data = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 0x40, 1, 0, 0, 10, 0, 1, 1, 128, 153, 144, 148,
        ];
        let c = full(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(full(&data), 0);
        // TTL 64 -> 63 in the word (ttl, proto).
        let old = u16::from_be_bytes([data[8], data[9]]);
        data[8] = 63;
        let new = u16::from_be_bytes([data[8], data[9]]);
        let c2 = update16(c, old, new);
        data[10..12].copy_from_slice(&c2.to_be_bytes());
        assert_eq!(full(&data), 0);
        // Source address rewrite.
        let old_src = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
        let new_src = u32::from_be_bytes([128, 153, 144, 204]);
        data[12..16].copy_from_slice(&new_src.to_be_bytes());
        let c3 = update32(c2, old_src, new_src);
        data[10..12].copy_from_slice(&c3.to_be_bytes());
        assert_eq!(full(&data), 0);
    }

    #[test]
    fn get_and_put_refuse_out_of_range() {
        let mut b = [0u8; 3];
        assert!(put16(&mut b, 1, 0xabcd));
        assert_eq!(get16(&b, 1), Some(0xabcd));
        assert!(!put16(&mut b, 2, 1));
        assert_eq!(get16(&b, 2), None);
        assert_eq!(get16(&b, usize::MAX), None);
    }
}
