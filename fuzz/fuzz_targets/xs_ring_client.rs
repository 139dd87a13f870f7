//! The `no_std` XenStore ring client facing a hostile xenstored: the input is a
//! script of the server's turns (bytes appended to `rsp[]`, any `rsp_prod` or
//! `req_cons`, requests consumed), played one turn per wait of the client while
//! it runs a fixed sequence of requests. Nothing may panic, every call returns
//! (the script ending is the wait hook giving up), a reply never claims more than
//! its buffer, and once broken the client stays broken.
#![no_main]

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use xennet_ring::xenstore::page::{Dir, XsWord};
use xennet_ring::xenstore::{TxId, XsEvent, XsPage, XsRingClient, XsRingError, XsRingMemory};

#[repr(C, align(4096))]
struct Page([u8; 4096]);

struct Hostile<'a> {
    raw: XsPage,
    script: &'a [u8],
}

impl Hostile<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.script.split_at(n.min(self.script.len()));
        self.script = b;
        a
    }

    fn word(&mut self) -> u32 {
        let b = self.take(4);
        let mut w = [0u8; 4];
        w[..b.len()].copy_from_slice(b);
        u32::from_le_bytes(w)
    }
}

impl XsEvent for Hostile<'_> {
    fn notify(&mut self) {}

    fn wait(&mut self) -> bool {
        let Some(&cmd) = self.take(1).first() else {
            return false;
        };
        match cmd % 4 {
            0 => {
                // Append bytes to rsp[] and publish them (the honest move).
                let n = usize::from(self.take(1).first().copied().unwrap_or(0));
                let data = self.take(n).to_vec();
                let prod = self.raw.load(XsWord::RspProd, Ordering::Relaxed);
                let mut done = 0;
                while done < data.len() {
                    let at = prod.wrapping_add(done as u32);
                    let room = 1024 - (at & 1023) as usize;
                    let k = room.min(data.len() - done);
                    self.raw.write(Dir::Rsp, at, &data[done..done + k]);
                    done += k;
                }
                let new = prod.wrapping_add(done as u32);
                self.raw.store(XsWord::RspProd, new, Ordering::Release);
            }
            1 => {
                let w = self.word();
                self.raw.store(XsWord::RspProd, w, Ordering::Release);
            }
            2 => {
                let w = self.word();
                self.raw.store(XsWord::ReqCons, w, Ordering::Release);
            }
            _ => {
                // Consume every request (the honest move on req[]).
                let prod = self.raw.load(XsWord::ReqProd, Ordering::Acquire);
                self.raw.store(XsWord::ReqCons, prod, Ordering::Release);
            }
        }
        true
    }
}

fn view(p: &mut Page) -> XsPage {
    // SAFETY: the page outlives both views (dropped at the end of the run) and is
    // reached only through them, one thread.
    unsafe { XsPage::new(NonNull::new(p.0.as_mut_ptr()).unwrap()) }.unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut page = Box::new(Page([0; 4096]));
    let hostile = Hostile {
        raw: view(&mut page),
        script: data,
    };
    let Ok(mut xs) = XsRingClient::with_memory(view(&mut page), hostile, [0u8; 512]) else {
        return;
    };
    let mut out = [0u8; 64];
    let mut ev = [0u8; 64];
    let mut broken = false;
    for step in 0..12 {
        let r: Result<usize, XsRingError> = match step % 6 {
            0 => xs.read(TxId::NONE, "device/vif/0/state", &mut out),
            1 => xs.watch("device", "tok").map(|_| 0),
            2 => xs
                .next_watch_event(&mut ev)
                .map(|e| e.map_or(0, |e| e.path.len() + e.token.len() + 2)),
            3 => xs.transaction_start().map(|t| t.0 as usize),
            4 => xs.write(TxId(1), "device/vif/0/state", b"4").map(|_| 0),
            _ => xs.directory(TxId::NONE, "device", &mut out),
        };
        match r {
            Ok(n) => {
                assert!(!broken, "a broken client answered");
                assert!(n <= 64 || step % 6 == 3, "a reply larger than its buffer");
            }
            Err(e) => {
                if e.is_protocol_violation() {
                    assert!(xs.is_broken());
                }
                if broken {
                    assert_eq!(e, XsRingError::Broken);
                }
            }
        }
        broken = xs.is_broken();
    }
});
