//! Crash cases for engines that keep files: the data directory as a power loss
//! could leave it (cut, torn pages, garbage, bit flips), reopened.

use super::*;

struct CrashSetup<H: EngineHarness> {
    _guard: H::Guard,
    dir: PathBuf,
    scratch: tempfile::TempDir,
}

type Setup<H> = Result<(CrashSetup<H>, <H as EngineHarness>::Engine), Outcome>;

fn crash_setup<H: EngineHarness>(h: &H) -> anyhow::Result<Setup<H>> {
    let (guard, e) = h.create()?;
    if !e.capabilities().file_crash_simulation {
        return Ok(Err(Outcome::NotApplicable(
            "engine does not keep files to cut",
        )));
    }
    let dir = h
        .data_dir(&guard)
        .context("file-based harness must give data_dir")?;
    let scratch = tempfile::tempdir()?;
    Ok(Ok((
        CrashSetup {
            _guard: guard,
            dir,
            scratch,
        },
        e,
    )))
}

/// Opens the engine on `image`; `Ok(None)` when it reports corruption.
fn open_image<H: EngineHarness>(
    h: &H,
    s: &CrashSetup<H>,
    image: &Image,
) -> anyhow::Result<Option<H::Engine>> {
    let dir = s.scratch.path().join("img");
    crash::materialize(image, &dir)?;
    match h.open_dir(&dir) {
        Ok(e) => Ok(Some(e)),
        Err(Error::Corrupt(_)) => Ok(None),
        Err(e) => bail!("opening a crash image failed with a non-corruption error: {e}"),
    }
}

/// The Raft writes of a crash scenario, to compare recovered state against.
struct RaftScenario {
    /// Per group: every entry ever appended (append-only scenario).
    entries: Vec<(GroupId, Vec<Entry>)>,
    /// Per group: number of entries synced.
    synced: Vec<usize>,
    /// Per group: the hard states written, the synced one first.
    hard_states: Vec<Vec<HardState>>,
}

fn raft_phase(
    e: &(impl Engine + ?Sized),
    s: &mut RaftScenario,
    lo: u64,
    hi: u64,
    term: u64,
) -> anyhow::Result<()> {
    for (gi, (g, all)) in s.entries.iter_mut().enumerate() {
        let mut i = lo;
        while i <= hi {
            let j = (i + (gi as u64 % 3)).min(hi);
            let es: Vec<Entry> = (i..=j)
                .map(|k| entry(k, term, 40 + (k as usize * 37) % 500))
                .collect();
            e.raft_append(*g, &es)?;
            all.extend(es);
            i = j + 1;
        }
        let hs = hard_state(term, 1, hi);
        e.raft_set_hard_state(*g, &hs)?;
        s.hard_states[gi].push(hs);
    }
    Ok(())
}

fn new_raft_scenario() -> RaftScenario {
    RaftScenario {
        entries: vec![(G1, Vec::new()), (G2, Vec::new())],
        synced: vec![0, 0],
        hard_states: vec![vec![HardState::default()], vec![HardState::default()]],
    }
}

fn mark_raft_synced(s: &mut RaftScenario) {
    for (gi, (_, all)) in s.entries.iter().enumerate() {
        s.synced[gi] = all.len();
        let last = s.hard_states[gi].pop().unwrap_or_default();
        s.hard_states[gi] = vec![last];
    }
}

/// Checks a recovered engine: each group's log is a prefix of what was written that
/// holds every synced entry; its hard state is the synced one or a later one; and it
/// accepts the next append.
fn check_raft_recovered(
    e: &(impl Engine + ?Sized),
    s: &RaftScenario,
    try_append: bool,
) -> anyhow::Result<()> {
    for (gi, (g, all)) in s.entries.iter().enumerate() {
        let got = read_all_entries(e, *g)?;
        ensure!(
            got.len() >= s.synced[gi],
            "{g}: {} entries recovered but {} were synced",
            got.len(),
            s.synced[gi]
        );
        ensure!(got.len() <= all.len(), "{g}: more entries than written");
        same_entries(&got, &all[..got.len()])?;
        let hs = e.raft_state(*g)?.hard_state;
        ensure!(
            s.hard_states[gi].contains(&hs),
            "{g}: hard state {hs:?} was never written after the last sync"
        );
        if try_append {
            let next = got.len() as u64 + 1;
            e.raft_append(*g, &[entry(next, 9, 10)])?;
            ensure_eq!(e.raft_last_index(*g)?, next, "{g}: append after recovery");
        }
    }
    Ok(())
}

/// Writes a crash case makes (some synced, then some not) and how to judge what an
/// engine recovered from them.
trait CrashScenario {
    /// Writes and syncs.
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()>;
    /// Writes more without syncing.
    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()>;
    /// Checks a recovered engine; `try_append` also checks that it takes new writes.
    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()>;
}

/// Runs a crash case: writes, captures the files after the sync and after the
/// unsynced writes, builds crash images from the two, and checks the engine opened
/// on each image.
fn crash_images<H: EngineHarness>(
    h: &H,
    mut sc: impl CrashScenario,
    min_images: usize,
    build: impl Fn(&Image, &Image) -> Vec<Image>,
) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    sc.write_synced(&e)?;
    let before = crash::capture(&s.dir)?;
    sc.write_unsynced(&e)?;
    let after = crash::capture(&s.dir)?;
    let images = build(&before, &after);
    ensure!(
        images.len() >= min_images.max(1),
        "only {} crash images were built, {min_images} wanted",
        images.len()
    );
    for (n, image) in images.iter().enumerate() {
        let e = open_image(h, &s, image)?
            .with_context(|| format!("crash image {n}: unsynced damage reported as corruption"))?;
        sc.check(&e, n % 50 == 0)
            .with_context(|| format!("crash image {n}"))?;
    }
    Ok(Outcome::Passed)
}

impl CrashScenario for RaftScenario {
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        raft_phase(e, self, 1, 20, 1)?;
        e.raft_sync()?;
        mark_raft_synced(self);
        Ok(())
    }

    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        raft_phase(e, self, 21, 30, 2)?;
        raft_phase(e, self, 31, 36, 3)
    }

    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()> {
        check_raft_recovered(e, self, try_append)
    }
}

impl CrashScenario for LogScenario {
    // ~70 KB flushed (segmented engines roll during this synced phase), then ~10 KB
    // unsynced: small enough that no engine needs to create files for it, since file
    // creation does its own syncs that this model cannot see.
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        log_phase(e, self, 200)?;
        e.log_flush(G1)?;
        self.synced = self.want.len();
        Ok(())
    }

    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        log_phase(e, self, 30)
    }

    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()> {
        check_log_recovered(e, self, try_append)
    }
}

fn new_log_scenario() -> LogScenario {
    LogScenario {
        want: Vec::new(),
        raft_index: Vec::new(),
        synced: 0,
    }
}

/// Cut images: the unsynced bytes persisted up to each of 1,500 points.
fn cut_images(before: &Image, after: &Image) -> Vec<Image> {
    let d = Diff::new(before, after);
    d.cut_points(1500).into_iter().map(|k| d.cut(k)).collect()
}

/// Torn images: each touched page persisted alone, and all but each one.
fn torn_images(before: &Image, after: &Image) -> Vec<Image> {
    Diff::new(before, after).torn_images()
}

/// The number of crash points the cut cases try at least.
pub const MIN_CRASH_POINTS: usize = 1000;

/// Raft log: crash after a sync with the unsynced bytes persisted up to every point.
pub fn crash_raft_cut_every_byte(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), MIN_CRASH_POINTS, cut_images)
}

/// Raft log: unsynced pages persisted out of order.
pub fn crash_raft_torn_pages(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), 2, torn_images)
}

/// Raft log: garbage where the next write would have gone.
pub fn crash_raft_garbage_tail(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), 200, garbage_images)
}

/// 200 images: a cut at an evenly spread point, then garbage of 1 to 5000 bytes.
fn garbage_images(before: &Image, after: &Image) -> Vec<Image> {
    let d = Diff::new(before, after);
    (0..200u64)
        .map(|seed| {
            let k = d.len() * (seed as usize) / 200;
            d.garbage_at_cut(k, 1 + (seed as usize * 97) % 5000, seed)
        })
        .collect()
}

/// Raft log: one bit flipped inside data synced before the last sync is reported as
/// corruption (at open or read), never served and never silently dropped.
pub fn crash_raft_bit_flip(h: &impl EngineHarness) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut sc = new_raft_scenario();
    let empty = crash::capture(&s.dir)?;
    raft_phase(&e, &mut sc, 1, 20, 1)?;
    e.raft_sync()?;
    let first_sync = crash::capture(&s.dir)?;
    raft_phase(&e, &mut sc, 21, 30, 2)?;
    e.raft_sync()?;
    mark_raft_synced(&mut sc);
    raft_phase(&e, &mut sc, 31, 36, 3)?;
    let now = crash::capture(&s.dir)?;
    let d = Diff::new(&empty, &first_sync);
    let mut rng = StdRng::seed_from_u64(11);
    let (mut detected, mut harmless) = (0, 0);
    for n in 0..300 {
        let (file, pos) = d.positions()[rng.gen_range(0..d.len())];
        let image = crash::with_flip(&now, file, pos, rng.r#gen());
        let Some(e) = open_image(h, &s, &image)? else {
            detected += 1;
            continue;
        };
        // Opened: every synced entry must read back intact, or the read must fail
        // with Corrupt. Fewer entries without an error is silent loss.
        let mut corrupt_read = false;
        for (gi, (g, all)) in sc.entries.iter().enumerate() {
            let last = e.raft_last_index(*g)?;
            match e.raft_entries(*g, 1, last + 1, None) {
                Ok(got) => {
                    ensure!(
                        got.len() >= sc.synced[gi],
                        "flip {n} at {}:{pos}: synced entries silently dropped ({} < {})",
                        file.display(),
                        got.len(),
                        sc.synced[gi]
                    );
                    same_entries(&got, &all[..got.len()])
                        .with_context(|| format!("flip {n} at {}:{pos}", file.display()))?;
                }
                Err(Error::Corrupt(_)) => corrupt_read = true,
                Err(other) => bail!("flip {n}: read failed with {other}"),
            }
        }
        if corrupt_read {
            detected += 1;
        } else {
            harmless += 1;
        }
    }
    ensure!(
        detected > 0,
        "no bit flip was ever detected ({harmless} harmless)"
    );
    Ok(Outcome::Passed)
}

struct LogScenario {
    want: Vec<Vec<u8>>,
    raft_index: Vec<u64>,
    synced: usize,
}

fn log_phase(e: &(impl Engine + ?Sized), s: &mut LogScenario, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let i = s.want.len() as u64;
        let b = produced_batch(
            1 + (i % 4) as usize,
            1000 + i as i64,
            i,
            10 + (i as usize * 53) % 200,
        );
        let idx = 3 * i + 2;
        let a = e.log_append(G1, idx, 2, &b)?;
        s.want.push(stamped(&b, a.base_offset, 2));
        s.raft_index.push(idx);
    }
    Ok(())
}

fn check_log_recovered(
    e: &(impl Engine + ?Sized),
    s: &LogScenario,
    try_append: bool,
) -> anyhow::Result<()> {
    let got = read_log(e, G1, 0)?;
    ensure!(
        got.len() >= s.synced,
        "{} batches recovered but {} were flushed",
        got.len(),
        s.synced
    );
    ensure!(got.len() <= s.want.len(), "more batches than written");
    ensure!(
        got[..] == s.want[..got.len()],
        "recovered batches differ from those written"
    );
    let st = e.log_state(G1)?;
    let applied = if got.is_empty() {
        0
    } else {
        s.raft_index[got.len() - 1]
    };
    ensure_eq!(
        st.applied_index,
        applied,
        "applied index must match the last recovered batch"
    );
    if try_append {
        let a = e.log_append(G1, applied + 1, 9, &produced_batch(1, 0, 1, 10))?;
        ensure_eq!(a.base_offset, st.next_offset, "append after recovery");
        ensure!(
            read_log(e, G1, 0)?.len() == got.len() + 1,
            "appended batch readable"
        );
    }
    Ok(())
}

/// Partition log: crash after a flush with unsynced bytes persisted up to every point.
pub fn crash_log_cut_every_byte(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), MIN_CRASH_POINTS, cut_images)
}

/// Partition log: unsynced pages persisted out of order.
pub fn crash_log_torn_pages(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), 2, torn_images)
}

/// Partition log: garbage where the next write would have gone.
pub fn crash_log_garbage_tail(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), 200, garbage_images)
}

/// Partition log: one bit flipped in flushed data is reported, never served, never
/// silently dropped.
pub fn crash_log_bit_flip(h: &impl EngineHarness) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut sc = LogScenario {
        want: Vec::new(),
        raft_index: Vec::new(),
        synced: 0,
    };
    let empty = crash::capture(&s.dir)?;
    log_phase(&e, &mut sc, 200)?;
    e.log_flush(G1)?;
    let first = crash::capture(&s.dir)?;
    log_phase(&e, &mut sc, 10)?;
    e.log_flush(G1)?;
    sc.synced = sc.want.len();
    log_phase(&e, &mut sc, 10)?;
    let now = crash::capture(&s.dir)?;
    let d = Diff::new(&empty, &first);
    let mut rng = StdRng::seed_from_u64(13);
    let mut detected = 0;
    for n in 0..300 {
        let (file, pos) = d.positions()[rng.gen_range(0..d.len())];
        let image = crash::with_flip(&now, file, pos, rng.r#gen());
        let Some(e) = open_image(h, &s, &image)? else {
            detected += 1;
            continue;
        };
        let ctx = || format!("flip {n} at {}:{pos}", file.display());
        let st = e.log_state(G1)?;
        ensure!(
            st.next_offset >= offset_after(&sc.want[..sc.synced]),
            "{}: flushed batches silently dropped",
            ctx()
        );
        // Read batch by batch; a Corrupt error is a detection, anything served must
        // be exactly what was written.
        let mut at = 0;
        let mut k = 0;
        while at < st.next_offset {
            match e.log_read(G1, at, 1) {
                Ok(bytes) => {
                    let (h0, one) = batch::iter_batches(&bytes).next().context("empty read")??;
                    ensure!(
                        k < sc.want.len() && one == &sc.want[k][..],
                        "{}: served bytes differ at batch {k}",
                        ctx()
                    );
                    at = h0.last_offset() + 1;
                    k += 1;
                }
                Err(Error::Corrupt(_)) => {
                    detected += 1;
                    break;
                }
                Err(other) => bail!("{}: read failed with {other}", ctx()),
            }
        }
    }
    ensure!(detected > 0, "no bit flip was ever detected");
    Ok(Outcome::Passed)
}

fn offset_after(batches: &[Vec<u8>]) -> i64 {
    batches
        .last()
        .and_then(|b| batch::BatchHeader::parse(b).ok())
        .map_or(0, |h| h.last_offset() + 1)
}
