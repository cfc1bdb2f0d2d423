//! Commands in flight on a logical unit, and the fence that stops new ones, so that the medium
//! can be replaced (a snapshot rollback) with no command straddling the change.
//!
//! Every command holds a [`Ticket`] while it executes. The count is striped per thread, each
//! stripe on its own cache line, so sessions on different shards do not contend on one
//! counter; only the (rare) drain sums the stripes. A command increments its stripe and then
//! checks the fence, and the drain sets the fence and then sums the stripes, both
//! sequentially consistent: a command that misses the fence is always counted.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Stripes of the in-flight count (threads beyond this share stripes).
const STRIPES: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicU32);

/// Next stripe handed to a thread that runs its first command.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
}

fn my_stripe() -> usize {
    STRIPE.with(|s| {
        if let Some(i) = s.get() {
            return i;
        }
        let i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(Some(i));
        i
    })
}

/// In-flight commands of one LU and its fence.
#[derive(Default)]
pub struct Quiesce {
    fenced: AtomicBool,
    stripes: [Stripe; STRIPES],
}

/// A command in flight; dropping it ends the command.
pub struct Ticket<'a> {
    quiesce: &'a Quiesce,
    stripe: usize,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.quiesce.stripes[self.stripe].0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Quiesce {
    /// Starts a command; `None` while the LU is fenced (the command is refused with BUSY).
    pub fn enter(&self) -> Option<Ticket<'_>> {
        let stripe = my_stripe();
        let ticket = Ticket { quiesce: self, stripe };
        self.stripes[stripe].0.fetch_add(1, Ordering::SeqCst);
        if self.fenced.load(Ordering::SeqCst) {
            return None;
        }
        Some(ticket)
    }

    /// Stops new commands. Returns false when the LU was already fenced (another replacement
    /// is under way).
    pub fn fence(&self) -> bool {
        !self.fenced.swap(true, Ordering::SeqCst)
    }

    /// Lets commands in again.
    pub fn unfence(&self) {
        self.fenced.store(false, Ordering::SeqCst);
    }

    /// True while fenced.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Commands in flight (including ones being refused by the fence right now).
    pub fn in_flight(&self) -> u32 {
        self.stripes.iter().map(|s| s.0.load(Ordering::SeqCst)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_refuses_new_commands_and_counts_the_running_ones() {
        let q = Quiesce::default();
        let a = q.enter().expect("open");
        let b = q.enter().expect("open");
        assert_eq!(q.in_flight(), 2);
        assert!(q.fence());
        assert!(!q.fence(), "a second fence is refused");
        assert!(q.enter().is_none(), "fenced");
        assert_eq!(q.in_flight(), 2, "a refused command leaves no count");
        drop(a);
        drop(b);
        assert_eq!(q.in_flight(), 0);
        q.unfence();
        assert!(q.enter().is_some());
        assert_eq!(q.in_flight(), 0);
    }
}
