//! What the simulator expects: block contents that name their LBA and write, and a model of
//! every volume and snapshot that says which values a reader may see now and after a crash.

use std::collections::{BTreeMap, BTreeSet};

/// The simulator's seeded random stream (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Ids with this bit are "shared" writes: like a WRITE SAME pattern, their content does not
/// depend on the LBA (the header's LBA field holds [`SAME_LBA`]), so equal data blocks arise
/// for dedup to find.
pub const SHARED_ID: u64 = 1 << 62;

/// The LBA field of a WRITE SAME pattern block: the same block lands on every LBA of its range.
pub const SAME_LBA: u64 = u64::MAX;

/// Content of logical block `lba` written by write `id` (0 = zeros).
pub fn block_bytes(lba: u64, id: u64, len: usize) -> Vec<u8> {
    if id == 0 {
        return vec![0; len];
    }
    let lba = if id & SHARED_ID != 0 { SAME_LBA } else { lba };
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&lba.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let mut r = Rng(lba.wrapping_mul(0x1000_0000_01b3) ^ id);
    // Two writes in three repeat each random word: about 2:1 compressible.
    let repeat = if id.is_multiple_of(3) { 1 } else { 2 };
    while out.len() < len {
        let word = r.next().to_le_bytes();
        for _ in 0..repeat {
            out.extend_from_slice(&word);
        }
    }
    out.truncate(len);
    out
}

/// Decodes a logical block: Ok(id) or a description of what is wrong.
pub fn decode_block(lba: u64, bytes: &[u8]) -> Result<u64, String> {
    if bytes.iter().all(|b| *b == 0) {
        return Ok(0);
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    let got_lba = u64::from_le_bytes(w);
    w.copy_from_slice(&bytes[8..16]);
    let id = u64::from_le_bytes(w);
    if got_lba == SAME_LBA {
        if bytes != block_bytes(SAME_LBA, id, bytes.len()).as_slice() {
            return Err(format!("LBA {lba} holds a torn WRITE SAME block (write {id})"));
        }
        return Ok(id);
    }
    if got_lba != lba {
        return Err(format!("LBA {lba} holds data of LBA {got_lba} (write {id})"));
    }
    if bytes != block_bytes(lba, id, bytes.len()).as_slice() {
        return Err(format!("LBA {lba} is torn (header says write {id})"));
    }
    Ok(id)
}

/// One volume's expected contents. Every write issued gets a generation; `since` holds the
/// writes issued after the durable one, any of which may survive a crash.
#[derive(Clone)]
pub struct VolModel {
    /// Value a reader must see now (unless `unknown`).
    pub current: Vec<u64>,
    current_gen: Vec<u64>,
    /// Last value known durable.
    pub durable: Vec<u64>,
    durable_gen: Vec<u64>,
    /// (generation, value) of writes issued after `durable`, oldest first.
    since: Vec<Vec<(u64, u64)>>,
    /// Writes issued and not yet completed.
    in_flight: Vec<u32>,
    /// An expected (injected) error left it open which value a reader sees.
    unknown: Vec<bool>,
}

/// Generations are unique across volumes and runs, so a mark taken before a rollback or clone
/// never names a write issued after it.
static NEXT_GEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Generations of each volume's LBAs at a point in time; `None` where a write was in flight
/// (or the value unknown), which a txg started after that point may or may not hold.
pub type Mark = BTreeMap<String, Vec<Option<u64>>>;

impl VolModel {
    pub fn new(values: Vec<u64>) -> VolModel {
        let n = values.len();
        VolModel {
            current: values.clone(),
            current_gen: vec![0; n],
            durable: values,
            durable_gen: vec![0; n],
            since: vec![Vec::new(); n],
            in_flight: vec![0; n],
            unknown: vec![false; n],
        }
    }

    /// A write of `id` to `lba` is issued; returns its generation.
    pub fn write(&mut self, lba: usize, id: u64) -> u64 {
        let gen = NEXT_GEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.current[lba] = id;
        self.current_gen[lba] = gen;
        self.since[lba].push((gen, id));
        self.in_flight[lba] += 1;
        self.unknown[lba] = false;
        gen
    }

    /// The write to `lba` completed (`ok`) or failed with an expected error.
    pub fn complete(&mut self, lba: usize, ok: bool) {
        self.in_flight[lba] -= 1;
        if !ok {
            self.unknown[lba] = true;
        }
    }

    /// The write of generation `gen` to `lba` is durable (acknowledged with FUA, or covered by
    /// a sync that started after it completed).
    pub fn ack(&mut self, lba: usize, gen: u64) {
        if gen <= self.durable_gen[lba] {
            return;
        }
        let Some(&(_, id)) = self.since[lba].iter().find(|(g, _)| *g == gen) else { return };
        self.durable[lba] = id;
        self.durable_gen[lba] = gen;
        self.since[lba].retain(|(g, _)| *g > gen);
    }

    fn mark(&self) -> Vec<Option<u64>> {
        (0..self.current.len())
            .map(|i| (self.in_flight[i] == 0 && !self.unknown[i]).then_some(self.current_gen[i]))
            .collect()
    }

    /// True when a reader may see `id` at `lba` now.
    pub fn readable_now(&self, lba: usize, id: u64) -> bool {
        if self.unknown[lba] {
            self.may_survive(lba, id)
        } else {
            self.current[lba] == id
        }
    }

    /// True when `id` may be found at `lba` after a crash.
    pub fn may_survive(&self, lba: usize, id: u64) -> bool {
        self.durable[lba] == id || self.since[lba].iter().any(|(_, v)| *v == id)
    }

    pub fn describe(&self, lba: usize) -> String {
        let later: Vec<u64> = self.since[lba].iter().map(|(_, v)| *v).collect();
        format!("durable {} later {later:?}", self.durable[lba])
    }
}

#[derive(Clone)]
pub struct SnapModel {
    pub volume: String,
    pub values: Vec<u64>,
    pub clones: usize,
}

#[derive(Default)]
pub struct Model {
    pub volumes: BTreeMap<String, VolModel>,
    pub snaps: BTreeMap<String, SnapModel>,
    /// Snapshots whose creation or destruction was in flight at the cut (or failed with an
    /// injected fault): each exists exactly as taken, or not at all.
    pub maybe_snaps: BTreeMap<String, SnapModel>,
    /// Clones whose creation was in flight: name -> snapshot values (exactly, or absent).
    pub maybe_clones: BTreeMap<String, Vec<u64>>,
    /// Rollbacks in flight: volume -> the values it holds entirely if the rollback happened.
    pub maybe_rollback: BTreeMap<String, Vec<u64>>,
    /// Snapshots whose destruction was acknowledged: they must never reappear.
    pub destroyed: BTreeSet<String>,
    pub next_id: u64,
}

impl Model {
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn volume(&mut self, name: &str) -> &mut VolModel {
        self.volumes.get_mut(name).expect("volume in the model")
    }

    /// Where every volume stands now (before a sync, snapshot or flush starts).
    pub fn mark(&self) -> Mark {
        self.volumes.iter().map(|(k, v)| (k.clone(), v.mark())).collect()
    }

    /// A txg that started after `mark` is durable: everything completed before it is.
    pub fn settle(&mut self, mark: &Mark) {
        for (name, gens) in mark {
            let Some(v) = self.volumes.get_mut(name) else { continue };
            for (lba, gen) in gens.iter().enumerate() {
                if let Some(gen) = gen {
                    v.ack(lba, *gen);
                }
            }
        }
    }
}
