//! The redundancy simulator: seeded runs of random redundancy groups under random faults
//! within what each group survives, through the pool's stripe.
//!
//! Each seed builds one to three groups (mirrors of 2 or 3 devices, RAID-Z1/2/3 of width
//! parity + 2 up to 10) over memory devices, writes random blocks of 4 KiB to 128 KiB in two
//! rounds, and then, per group, gives up to its tolerance (a mirror's children less one,
//! RAID-Z's parity) distinct devices one fault each:
//! - **rot:** bits flipped in the part of the device the blocks occupy;
//! - **stale:** the device comes back with its image from before the second round (it missed
//!   those writes);
//! - **lost:** every read and write fails until it returns, after the first scrub.
//!
//! Then every block must read back correct (no error reaches the reader), a scrub must find
//! every block repairable, and after the lost devices return (and a mirror's children are
//! put back online) a second scrub repairs what is left, a third finds nothing, and every
//! block still reads correct. `FERRITE_REDUNDANCY_SEEDS` (default 500) and
//! `FERRITE_REDUNDANCY_SEED_BASE` choose the seeds; a failure names its seed and layout.

use std::fmt::Write as _;
use std::sync::Arc;

use drivers::blockdev::fault::{FaultConfig, FaultDevice};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::prng::SplitMix64;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};

use super::{DeviceStats, Leaf, Mirror, RaidZ, Stripe, Vdev};
use crate::block_pointer::{BlockPointer, CHECKSUM_XXH3_128};
use crate::format::checksum;

/// Bytes of each memory device.
const DEVICE_BYTES: u64 = 2 << 20;
const SECTOR: u64 = 4096;

/// Block sizes, in sectors.
const BLOCK_SECTORS: [u64; 7] = [1, 2, 3, 4, 8, 16, 32];

/// What happens to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Rot,
    Stale,
    Lost,
}

/// One device: its memory, the fault wrapper over it, and its fault.
struct Device {
    memory: Arc<MemoryDevice>,
    wrapper: Arc<FaultDevice>,
    fault: Option<Damage>,
}

/// One group of the layout.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Mirror(usize),
    RaidZ { width: usize, parity: usize },
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::Mirror(n) => n,
            Kind::RaidZ { width, .. } => width,
        }
    }

    /// Devices of the group that may be bad at once.
    fn tolerance(self) -> usize {
        match self {
            Kind::Mirror(n) => n - 1,
            Kind::RaidZ { parity, .. } => parity,
        }
    }

    /// Bytes of the group's address space.
    fn capacity(self) -> u64 {
        match self {
            Kind::Mirror(_) => DEVICE_BYTES,
            Kind::RaidZ { width, .. } => DEVICE_BYTES * width as u64,
        }
    }
}

/// A written block: where, and what it holds.
struct Written {
    bp: BlockPointer,
    data: Vec<u8>,
}

struct Run {
    seed: u64,
    rng: SplitMix64,
    kinds: Vec<Kind>,
    /// Per group, its devices.
    devices: Vec<Vec<Device>>,
    stripe: Stripe,
    /// Per group, the next free offset of its address space.
    next: Vec<u64>,
    blocks: Vec<Written>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = SplitMix64::new(seed ^ 0x7265_6475_6e64_616e);
        let groups = 1 + rng.below(3) as usize;
        let kinds: Vec<Kind> = (0..groups)
            .map(|_| {
                if rng.below(2) == 0 {
                    Kind::Mirror(2 + rng.below(2) as usize)
                } else {
                    let parity = 1 + rng.below(3) as usize;
                    let width = parity + 2 + rng.below((9 - parity) as u64) as usize;
                    Kind::RaidZ { width, parity }
                }
            })
            .collect();
        let stats = Arc::new(DeviceStats::default());
        let mut devices = Vec::new();
        let mut children = Vec::new();
        for kind in &kinds {
            let group: Vec<Device> = (0..kind.width())
                .map(|_| {
                    let memory = Arc::new(MemoryDevice::new(DEVICE_BYTES, 512));
                    let inner = Arc::clone(&memory) as Arc<dyn BlockDevice>;
                    let wrapper = Arc::new(FaultDevice::new(inner, FaultConfig::gone()));
                    wrapper.set_armed(false);
                    Device { memory, wrapper, fault: None }
                })
                .collect();
            let leaves: Vec<Leaf> = group
                .iter()
                .map(|d| {
                    Leaf::new(Arc::clone(&d.wrapper) as Arc<dyn BlockDevice>, Arc::clone(&stats))
                })
                .collect();
            children.push(match *kind {
                Kind::Mirror(_) => Vdev::Mirror(Mirror::new(leaves).expect("mirror")),
                Kind::RaidZ { parity, .. } => {
                    Vdev::RaidZ(RaidZ::new(leaves, parity).expect("raidz"))
                }
            });
            devices.push(group);
        }
        let stripe = Stripe::from_children(children, stats);
        Run { seed, rng, next: vec![0; kinds.len()], kinds, devices, stripe, blocks: Vec::new() }
    }

    /// What a failure message names.
    fn describe(&self) -> String {
        let mut s = format!("seed {}:", self.seed);
        for (g, kind) in self.kinds.iter().enumerate() {
            let faults: Vec<String> = self.devices[g]
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.fault.map(|f| format!("{i} {f:?}")))
                .collect();
            let _ = write!(s, " group {g} {kind:?} faults [{}];", faults.join(", "));
        }
        s
    }

    /// Writes up to `count` random blocks across the groups (fewer when they fill up).
    async fn write_round(&mut self, count: usize) {
        for _ in 0..count {
            let g = self.rng.below(self.kinds.len() as u64) as usize;
            let sectors = BLOCK_SECTORS[self.rng.below(BLOCK_SECTORS.len() as u64) as usize];
            let len = sectors * SECTOR;
            let group = self.stripe.child(u16::try_from(g).expect("group")).expect("group");
            let allocated = group.allocated_bytes(len);
            let offset = self.next[g];
            if offset + allocated > self.kinds[g].capacity() {
                continue;
            }
            self.next[g] = offset + allocated;
            let mut data = vec![0u8; usize::try_from(len).expect("block")];
            self.rng.fill(&mut data);
            let bp = BlockPointer {
                offset_bytes: offset,
                checksum: checksum(&data),
                logical_bytes: u32::try_from(len).expect("block"),
                physical_bytes: u32::try_from(len).expect("block"),
                device: u16::try_from(g).expect("group"),
                checksum_type: CHECKSUM_XXH3_128,
                ..BlockPointer::default()
            };
            let (res, _) = self.stripe.write(bp.device, offset, IoBuf::from_slice(&data)).await;
            res.unwrap_or_else(|e| panic!("{}: write failed: {e}", self.describe()));
            self.blocks.push(Written { bp, data });
        }
        self.stripe.flush_all().await.expect("flush");
    }

    /// Chooses each group's faulty devices and their faults.
    fn choose_faults(&mut self) {
        for g in 0..self.kinds.len() {
            let tolerance = self.kinds[g].tolerance();
            let bad = 1 + self.rng.below(tolerance as u64) as usize;
            let mut picked = Vec::new();
            while picked.len() < bad {
                let d = self.rng.below(self.kinds[g].width() as u64) as usize;
                if !picked.contains(&d) {
                    picked.push(d);
                }
            }
            for d in picked {
                let fault = match self.rng.below(3) {
                    0 => Damage::Rot,
                    1 => Damage::Stale,
                    _ => Damage::Lost,
                };
                self.devices[g][d].fault = Some(fault);
            }
        }
    }

    /// The images of the stale devices now.
    fn stale_images(&self) -> Vec<(usize, usize, Vec<u8>)> {
        let mut images = Vec::new();
        for (g, group) in self.devices.iter().enumerate() {
            for (d, dev) in group.iter().enumerate() {
                if dev.fault == Some(Damage::Stale) {
                    let mut image = vec![0u8; usize::try_from(DEVICE_BYTES).expect("size")];
                    dev.memory.read_into(&mut image, 0).expect("image");
                    images.push((g, d, image));
                }
            }
        }
        images
    }

    /// Flips 1 to 24 random bits in the used part of each rotting device.
    fn rot(&mut self) {
        for g in 0..self.devices.len() {
            let used = match self.kinds[g] {
                Kind::Mirror(_) => self.next[g],
                Kind::RaidZ { width, .. } => self.next[g].div_ceil(width as u64 * SECTOR) * SECTOR,
            };
            if used == 0 {
                continue;
            }
            for d in 0..self.devices[g].len() {
                if self.devices[g][d].fault != Some(Damage::Rot) {
                    continue;
                }
                for _ in 0..1 + self.rng.below(24) {
                    let at = self.rng.below(used);
                    let sector_at = at - at % 512;
                    let mut sector = [0u8; 512];
                    let memory = &self.devices[g][d].memory;
                    memory.read_into(&mut sector, sector_at).expect("read");
                    sector[(at - sector_at) as usize] ^= 1 << self.rng.below(8);
                    memory.write_from(&sector, sector_at).expect("write");
                }
            }
        }
    }

    fn set_lost(&self, lost: bool) {
        for dev in self.devices.iter().flatten() {
            if dev.fault == Some(Damage::Lost) {
                dev.wrapper.set_armed(lost);
            }
        }
    }

    /// Every block reads back as written.
    async fn verify_reads(&self, when: &str) {
        for (i, b) in self.blocks.iter().enumerate() {
            match self.stripe.read_block(&b.bp).await {
                Ok(buf) => assert!(
                    buf[..] == b.data[..],
                    "{} {when}: block {i} {:?} read back different bytes",
                    self.describe(),
                    b.bp
                ),
                Err(e) => panic!("{} {when}: block {i} {:?}: {e:?}", self.describe(), b.bp),
            }
        }
    }

    /// Scrubs every block: (bad copies found, bytes repaired).
    async fn scrub(&self, when: &str) -> (u64, u64) {
        let (mut bad, mut repaired) = (0, 0);
        for (i, b) in self.blocks.iter().enumerate() {
            let outcome = self
                .stripe
                .scrub_block(&b.bp)
                .await
                .unwrap_or_else(|e| panic!("{} {when}: block {i}: {e:?}", self.describe()));
            assert!(!outcome.unrepairable, "{} {when}: block {i} unrepairable", self.describe());
            bad += u64::from(outcome.bad_copies);
            repaired += outcome.repaired_bytes;
        }
        (bad, repaired)
    }

    /// Puts every mirror child back online (a lost device is back).
    fn online_all(&self) {
        for g in 0..self.kinds.len() {
            if let Ok(Vdev::Mirror(m)) = self.stripe.child(u16::try_from(g).expect("group")) {
                for c in 0..m.leaves().len() {
                    m.online(c);
                }
            }
        }
    }
}

/// One seed's run; returns (blocks, faulty devices).
async fn run(seed: u64) -> (usize, usize) {
    let mut run = Run::new(seed);
    run.choose_faults();
    let first = 8 + run.rng.below(24) as usize;
    run.write_round(first).await;
    let images = run.stale_images();
    let second = 8 + run.rng.below(24) as usize;
    run.write_round(second).await;
    for (g, d, image) in images {
        run.devices[g][d].memory.write_from(&image, 0).expect("stale image");
    }
    run.rot();
    run.set_lost(true);
    run.verify_reads("with faults").await;
    run.scrub("first scrub").await;
    run.verify_reads("after the first scrub").await;
    run.set_lost(false);
    run.online_all();
    run.scrub("second scrub").await;
    let (bad, repaired) = run.scrub("third scrub").await;
    assert_eq!((bad, repaired), (0, 0), "{}: the third scrub found damage", run.describe());
    run.verify_reads("at the end").await;
    let faulty = run.devices.iter().flatten().filter(|d| d.fault.is_some()).count();
    (run.blocks.len(), faulty)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn redundancy_groups_survive_faults_within_their_tolerance() {
    if !super::raidz::parity::cpu_supported() {
        println!("skipped: this CPU lacks the AVX2 the RAID-Z parity kernels need");
        return;
    }
    let seeds = env_u64("FERRITE_REDUNDANCY_SEEDS", 500);
    let base = env_u64("FERRITE_REDUNDANCY_SEED_BASE", 0);
    let reactor =
        Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
            .expect("reactor");
    let (mut blocks, mut faulty) = (0, 0);
    for seed in base..base + seeds {
        let (b, f) = reactor.block_on(run(seed));
        blocks += b;
        faulty += f;
    }
    println!(
        "redundancy simulator: seeds {base}..{}, {blocks} blocks, {faulty} faulty devices, \
         every block read back and scrubbed clean",
        base + seeds
    );
}
