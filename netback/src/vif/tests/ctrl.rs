//! The control ring's faults end the vif with a counted reason, wherever they are
//! first seen.

use xennet_platform::clock;
use xennet_platform::shm::Domain;
use xennet_ring::RingError;

use super::{ctrl_ring, domains};
use crate::vif::{Vif, VifError};

#[test]
fn a_control_ring_fault_first_seen_by_the_final_check_ends_the_vif_and_is_counted() {
    let d = domains();
    let (ring, page) = ctrl_ring(&d);
    // No data queues: the fault is the control ring's alone.
    let mut vif: Vif<_, Domain, _> = Vif::new(super::GUEST, 0, Vec::new());
    vif.attach_ctrl(ring);
    assert_eq!(vif.final_check(), Ok(false));
    // While the data plane sleeps the frontend claims 5000 requests.
    // SAFETY: the guest's ring page is live; this is the hostile write under test.
    unsafe { (page.as_ptr() as *mut u32).write_volatile(5000) };
    let e = vif.final_check().unwrap_err();
    assert!(
        matches!(e, VifError::Ring(RingError::ProducerOverflow { .. })),
        "{e:?}"
    );
    assert_eq!(vif.counters().fatal_errors, 1, "the fault is counted");
    // It sticks, and is counted once.
    assert_eq!(vif.broken(), Some(e));
    assert_eq!(vif.process_tx(64, clock::now(), &mut |_| {}), Err(e));
    assert_eq!(vif.final_check().err(), Some(e));
    assert_eq!(vif.counters().fatal_errors, 1);
}

#[test]
fn a_kick_on_the_control_channel_is_counted_on_the_vif_and_past_it_nowhere() {
    let d = domains();
    let (ring, _) = ctrl_ring(&d);
    let mut vif: Vif<_, Domain, _> = Vif::new(super::GUEST, 0, Vec::new());
    vif.attach_ctrl(ring);
    vif.note_event(0);
    vif.note_event(1);
    assert_eq!(vif.counters().notify_received, 1);
}
