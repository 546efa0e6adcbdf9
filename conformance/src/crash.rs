//! Disk images and crash points.
//!
//! A crash is simulated on the *files* an engine keeps: the suite captures the
//! directory right after a sync (`before`) and again after more, unsynced writes
//! (`after`), then builds images a power loss could leave behind:
//!
//! * **cuts** — the unsynced bytes persisted in file order up to a point, nothing after;
//! * **torn pages** — unsynced 4 KiB pages persisted out of order: one page alone, or
//!   all pages but one;
//! * **garbage** — random bytes where the next write would have gone;
//! * **bit flips** — one bit changed inside data that was synced.
//!
//! Each image is written to a scratch directory and the engine opened on it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The files under a directory: relative path → contents.
pub type Image = BTreeMap<PathBuf, Vec<u8>>;

/// The page size used for torn-write simulation.
pub const PAGE: usize = 4096;

/// Reads every regular file under `dir` (recursively).
///
/// # Errors
/// Any I/O error reading the tree.
pub fn capture(dir: &Path) -> io::Result<Image> {
    let mut image = Image::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(io::Error::other)?
                    .to_path_buf();
                image.insert(rel, fs::read(&path)?);
            }
        }
    }
    Ok(image)
}

/// Replaces the contents of `dir` with `image`.
///
/// # Errors
/// Any I/O error writing the tree.
pub fn materialize(image: &Image, dir: &Path) -> io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    for (rel, bytes) in image {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, bytes)?;
    }
    Ok(())
}

/// The bytes that differ between two images, in (file, position) order: what a crash
/// may or may not have persisted. Files deleted in `after` are ignored (a crash before
/// the deletion keeps them).
#[derive(Debug)]
pub struct Diff<'a> {
    before: &'a Image,
    after: &'a Image,
    /// (file, position) of each byte that differs, ordered.
    positions: Vec<(&'a Path, usize)>,
}

impl<'a> Diff<'a> {
    /// Computes the difference from `before` to `after`.
    pub fn new(before: &'a Image, after: &'a Image) -> Self {
        let empty: &[u8] = &[];
        let mut positions = Vec::new();
        for (path, new) in after {
            let old = before.get(path).map_or(empty, Vec::as_slice);
            for (i, &b) in new.iter().enumerate() {
                if old.get(i) != Some(&b) {
                    positions.push((path.as_path(), i));
                }
            }
        }
        Diff {
            before,
            after,
            positions,
        }
    }

    /// Number of differing bytes.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The image where exactly the differing bytes selected by `keep` persisted.
    pub fn image_with(&self, mut keep: impl FnMut(usize, &Path, usize) -> bool) -> Image {
        let mut image = self.before.clone();
        for (n, &(path, pos)) in self.positions.iter().enumerate() {
            if !keep(n, path, pos) {
                continue;
            }
            let file = image.entry(path.to_path_buf()).or_default();
            if file.len() <= pos {
                file.resize(pos + 1, 0);
            }
            file[pos] = self.after[path][pos];
        }
        image
    }

    /// The image in which the first `k` differing bytes persisted.
    pub fn cut(&self, k: usize) -> Image {
        self.image_with(|n, _, _| n < k)
    }

    /// Cut points: every byte when there are at most `max`, else `max` evenly spread
    /// ones, always including 0 and all.
    pub fn cut_points(&self, max: usize) -> Vec<usize> {
        let n = self.len();
        if n <= max {
            return (0..=n).collect();
        }
        let mut v: Vec<usize> = (0..max).map(|i| i * n / max).collect();
        v.push(n);
        v.dedup();
        v
    }

    /// The distinct (file, page) pairs touched by the difference.
    pub fn pages(&self) -> Vec<(&'a Path, usize)> {
        let mut v: Vec<_> = self.positions.iter().map(|&(p, i)| (p, i / PAGE)).collect();
        v.dedup();
        v
    }

    /// Torn-write images: each touched page persisted alone, and all but each one.
    pub fn torn_images(&self) -> Vec<Image> {
        let mut out = Vec::new();
        for page in self.pages() {
            out.push(self.image_with(|_, p, i| (p, i / PAGE) == page));
            out.push(self.image_with(|_, p, i| (p, i / PAGE) != page));
        }
        out
    }

    /// The image of [`Diff::cut`]`(k)` with `len` random bytes where the first byte
    /// that did not persist would have gone: a write that reached the disk as garbage.
    pub fn garbage_at_cut(&self, k: usize, len: usize, seed: u64) -> Image {
        let mut image = self.cut(k);
        let Some(&(path, pos)) = self.positions.get(k) else {
            return image;
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let file = image.entry(path.to_path_buf()).or_default();
        if file.len() < pos + len {
            file.resize(pos + len, 0);
        }
        for b in &mut file[pos..pos + len] {
            *b = rng.r#gen();
        }
        image
    }

    /// Positions (file, byte) that differ, for choosing where to flip bits.
    pub fn positions(&self) -> &[(&'a Path, usize)] {
        &self.positions
    }
}

/// `image` with one bit flipped at (file, position).
pub fn with_flip(image: &Image, file: &Path, pos: usize, bit: u8) -> Image {
    let mut out = image.clone();
    if let Some(bytes) = out.get_mut(file)
        && let Some(b) = bytes.get_mut(pos)
    {
        *b ^= 1 << (bit % 8);
    }
    out
}
