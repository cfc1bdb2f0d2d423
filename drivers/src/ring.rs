//! The io_uring ring of one shard and the slab of operations in flight.
//!
//! Each operation in flight owns one slot; its `user_data` is the slot index and a generation
//! (never a pointer), so a completion for a slot that has since been reused is recognised and
//! dropped. An operation whose future is dropped before completion leaves its resources (the
//! buffer, the iovec array, the socket address) parked in the slot until the kernel completes
//! it; only then are they freed.

use std::any::Any;
use std::task::Waker;

use io_uring::{squeue, IoUring};

use crate::error::{IoError, IoResult};

/// `user_data` of internal operations whose completions carry nothing to deliver.
pub(crate) const TOKEN_IGNORE: u64 = u64::MAX;
/// `user_data` of the shard's eventfd read (cross-thread wake-ups).
pub(crate) const TOKEN_EVENTFD: u64 = u64::MAX - 1;

const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_CQE_F_MORE: u32 = 1 << 1;

/// Ring set-up features that were actually obtained from the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingFeatures {
    /// IORING_SETUP_SINGLE_ISSUER.
    pub single_issuer: bool,
    /// IORING_SETUP_DEFER_TASKRUN.
    pub defer_taskrun: bool,
    /// IORING_SETUP_COOP_TASKRUN.
    pub coop_taskrun: bool,
    /// IORING_OP_SEND_ZC is supported.
    pub send_zc: bool,
}

impl std::fmt::Display for RingFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "single_issuer={} defer_taskrun={} coop_taskrun={} send_zc={}",
            self.single_issuer, self.defer_taskrun, self.coop_taskrun, self.send_zc
        )
    }
}

enum SlotState {
    Free,
    /// Submitted; the waker of the task awaiting it.
    Pending {
        waker: Option<Waker>,
        first_result: Option<i32>,
    },
    /// Completed; result and flags wait to be picked up by the future.
    Completed {
        result: i32,
        flags: u32,
    },
    /// The future was dropped; its resources stay here until the kernel completes.
    Orphaned {
        #[expect(dead_code, reason = "held, never read: freed when the kernel completes")]
        resources: Box<dyn Any>,
        first_result: Option<i32>,
    },
}

struct Slot {
    generation: u32,
    state: SlotState,
}

/// Identity of an operation in flight: slot index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId {
    index: u32,
    generation: u32,
}

impl OpId {
    pub(crate) fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_user_data(user_data: u64) -> OpId {
        OpId { index: (user_data & 0xffff_ffff) as u32, generation: (user_data >> 32) as u32 }
    }
}

/// What polling an operation found.
pub(crate) enum Poll {
    Ready { result: i32, flags: u32 },
    Pending,
}

/// One shard's ring.
pub(crate) struct Ring {
    uring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: usize,
    features: RingFeatures,
    /// Operations queued but not yet handed to the kernel.
    unsubmitted: usize,
    /// Fixed-file table: which raw fd each registered slot holds.
    fixed_files: Vec<Option<i32>>,
}

impl Ring {
    /// Creates a ring of `entries` SQEs, asking for the best set-up flags the kernel has.
    pub(crate) fn new(entries: u32) -> IoResult<Ring> {
        let attempts: [(bool, bool, bool); 4] =
            [(true, true, true), (true, true, false), (true, false, true), (false, false, false)];
        let mut last_err = IoError::Unsupported(libc::ENOSYS);
        for (single_issuer, defer_taskrun, coop_taskrun) in attempts {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(entries * 4).setup_clamp();
            if single_issuer {
                builder.setup_single_issuer();
            }
            if defer_taskrun {
                builder.setup_defer_taskrun();
            }
            if coop_taskrun {
                builder.setup_coop_taskrun();
            }
            match builder.build(entries) {
                Ok(uring) => {
                    let send_zc = probe_send_zc(&uring);
                    let features =
                        RingFeatures { single_issuer, defer_taskrun, coop_taskrun, send_zc };
                    return Ok(Ring {
                        uring,
                        slots: Vec::new(),
                        free: Vec::new(),
                        in_flight: 0,
                        features,
                        unsubmitted: 0,
                        fixed_files: Vec::new(),
                    });
                }
                Err(err) => last_err = IoError::from(err),
            }
        }
        Err(last_err)
    }

    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.uring.submitter()
    }

    /// Registers `fd` in the ring's fixed-file table and returns its slot.
    pub(crate) fn register_file(&mut self, fd: i32) -> IoResult<u32> {
        const TABLE_SLOTS: u32 = 256;
        if self.fixed_files.is_empty() {
            self.uring.submitter().register_files_sparse(TABLE_SLOTS)?;
            self.fixed_files = vec![None; TABLE_SLOTS as usize];
        }
        let Some(slot) = self.fixed_files.iter().position(Option::is_none) else {
            return Err(IoError::Resource(libc::EMFILE));
        };
        let slot_u32 = u32::try_from(slot).expect("table is small");
        self.uring.submitter().register_files_update(slot_u32, &[fd])?;
        self.fixed_files[slot] = Some(fd);
        Ok(slot_u32)
    }

    /// Removes a fixed-file slot.
    pub(crate) fn unregister_file(&mut self, slot: u32) {
        if let Some(entry) = self.fixed_files.get_mut(slot as usize) {
            if entry.take().is_some() {
                let _ = self.uring.submitter().register_files_update(slot, &[-1]);
            }
        }
    }

    /// SQEs queued and not yet handed to the kernel.
    pub(crate) fn unsubmitted(&self) -> usize {
        self.unsubmitted
    }

    /// Operations submitted and not yet completed (including orphaned ones).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn alloc_slot(&mut self) -> OpId {
        let index = if let Some(index) = self.free.pop() {
            index
        } else {
            let index = u32::try_from(self.slots.len()).expect("slot count fits u32");
            self.slots.push(Slot { generation: 0, state: SlotState::Free });
            index
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.state = SlotState::Pending { waker: None, first_result: None };
        OpId { index, generation: slot.generation }
    }

    /// Pushes an SQE, submitting first when the queue is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until the operation completes (the caller
    /// keeps the memory owned by the operation's resources, which outlive the completion).
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> IoResult<()> {
        loop {
            // SAFETY: the caller guarantees the entry's pointers outlive the operation.
            let pushed = unsafe { self.uring.submission().push(entry) };
            if pushed.is_ok() {
                self.unsubmitted += 1;
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Queues an operation and returns its id.
    ///
    /// # Safety
    /// As for [`Ring::push`].
    pub(crate) unsafe fn start(&mut self, entry: squeue::Entry) -> IoResult<OpId> {
        let id = self.alloc_slot();
        let entry = entry.user_data(id.user_data());
        // SAFETY: forwarded from the caller.
        if let Err(err) = unsafe { self.push(&entry) } {
            self.release(id);
            return Err(err);
        }
        self.in_flight += 1;
        Ok(id)
    }

    fn release(&mut self, id: OpId) {
        self.slots[id.index as usize].state = SlotState::Free;
        self.free.push(id.index);
    }

    /// Checks an operation; registers `waker` when it is still pending.
    pub(crate) fn poll(&mut self, id: OpId, waker: &Waker) -> Poll {
        let slot = &mut self.slots[id.index as usize];
        assert_eq!(slot.generation, id.generation, "op polled after its slot was reused");
        match &mut slot.state {
            SlotState::Completed { result, flags } => {
                let (result, flags) = (*result, *flags);
                self.release(id);
                Poll::Ready { result, flags }
            }
            SlotState::Pending { waker: stored, .. } => {
                match stored {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                Poll::Pending
            }
            SlotState::Free | SlotState::Orphaned { .. } => {
                unreachable!("op polled in an impossible state")
            }
        }
    }

    /// The future of a pending operation was dropped: park its resources and ask the kernel
    /// to cancel it. When it already completed, the resources are simply dropped.
    pub(crate) fn abandon(&mut self, id: OpId, resources: Box<dyn Any>) {
        let slot = &mut self.slots[id.index as usize];
        if slot.generation != id.generation {
            return;
        }
        match std::mem::replace(&mut slot.state, SlotState::Free) {
            SlotState::Completed { .. } => {
                self.release(id);
            }
            SlotState::Pending { first_result, .. } => {
                slot.state = SlotState::Orphaned { resources, first_result };
                let cancel = io_uring::opcode::AsyncCancel::new(id.user_data())
                    .build()
                    .user_data(TOKEN_IGNORE);
                // SAFETY: AsyncCancel carries no pointers.
                let _ = unsafe { self.push(&cancel) };
            }
            other => slot.state = other,
        }
    }

    /// Hands queued SQEs to the kernel and runs deferred completions, without waiting.
    pub(crate) fn submit(&mut self) -> IoResult<()> {
        let to_submit = u32::try_from(self.uring.submission().len()).unwrap_or(u32::MAX);
        loop {
            // SAFETY: plain io_uring_enter with no argument pointer.
            let res = unsafe {
                self.uring.submitter().enter::<libc::sigset_t>(
                    to_submit,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            };
            match res {
                Ok(_) => {
                    self.unsubmitted = 0;
                    return Ok(());
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR)) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    return Ok(());
                }
                Err(e) => return Err(IoError::from(e)),
            }
        }
    }

    /// Submits and waits for at least one completion or until `timeout` passes.
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<std::time::Duration>) -> IoResult<()> {
        let result = match timeout {
            Some(t) => {
                let ts = io_uring::types::Timespec::from(t);
                let args = io_uring::types::SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
            None => self.uring.submitter().submit_and_wait(1),
        };
        match result {
            Ok(_) => {
                self.unsubmitted = 0;
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {
                Ok(())
            }
            Err(e) => Err(IoError::from(e)),
        }
    }

    /// Drains the completion queue: records results, wakes tasks, frees orphans. Returns the
    /// completions of internal tokens (eventfd) for the reactor to handle.
    pub(crate) fn reap(
        &mut self,
        woken: &mut Vec<Waker>,
        mut on_token: impl FnMut(u64, i32),
    ) -> usize {
        let mut count = 0;
        let Ring { uring, slots, free, in_flight, .. } = self;
        for cqe in uring.completion() {
            count += 1;
            let user_data = cqe.user_data();
            if user_data == TOKEN_IGNORE || user_data == TOKEN_EVENTFD {
                on_token(user_data, cqe.result());
                continue;
            }
            let id = OpId::from_user_data(user_data);
            let Some(slot) = slots.get_mut(id.index as usize) else { continue };
            if slot.generation != id.generation {
                continue;
            }
            let more = cqe.flags() & IORING_CQE_F_MORE != 0;
            match &mut slot.state {
                SlotState::Pending { waker, first_result } => {
                    if more {
                        // Zero-copy send: the result comes first, the buffer is released by a
                        // later notification.
                        *first_result = Some(cqe.result());
                        continue;
                    }
                    let result = first_result.unwrap_or(cqe.result());
                    if let Some(w) = waker.take() {
                        woken.push(w);
                    }
                    slot.state = SlotState::Completed { result, flags: cqe.flags() };
                    *in_flight -= 1;
                }
                SlotState::Orphaned { first_result, .. } => {
                    if more {
                        *first_result = Some(cqe.result());
                        continue;
                    }
                    slot.state = SlotState::Free;
                    free.push(id.index);
                    *in_flight -= 1;
                }
                SlotState::Free | SlotState::Completed { .. } => {}
            }
        }
        count
    }
}

fn probe_send_zc(uring: &IoUring) -> bool {
    let mut probe = io_uring::Probe::new();
    if uring.submitter().register_probe(&mut probe).is_err() {
        return false;
    }
    probe.is_supported(io_uring::opcode::SendZc::CODE)
}
