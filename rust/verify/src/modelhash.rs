//! Hashing a model's files and shards for its OMS v1.0 manifest (OpenSSF Model Signing
//! specification v1.0 §6.3): SHA-256 (required, §7) or BLAKE3 (optional) of each byte range.
//!
//! The caller (Python `sealgate.oms.manifest`) enumerates the model, canonicalises names and
//! orders the resources; this module only digests ranges, as fast as the machine allows:
//!
//! * parallel across jobs: a private rayon pool of `workers` threads pulls jobs longest first
//!   (greedy LPT scheduling), so one large file started last cannot leave a core idle at the end;
//! * parallel within a job for BLAKE3: its tree hash splits each buffer across the same pool
//!   (`Hasher::update_rayon`); SHA-256 is a Merkle–Damgård chain and cannot be split, so large
//!   files are parallel only through shards (§6.3.2);
//! * streamed in constant memory: one `BUF`-byte buffer per worker for `pread`, or one mapped
//!   window of at most `MAP_WINDOW` bytes per worker (see "Mapping") — never the whole file.
//!
//! # Mapping
//!
//! Copying from the page cache costs this VM about as much as BLAKE3 itself (measured: `pread`
//! alone 5.4 GB/s, BLAKE3 over a mapping 5.7–6.0 GB/s, BLAKE3 over `pread` 2.4–3.3 GB/s; SHA-256
//! loses ~15 %). But a mapped file that someone truncates kills the whole process with SIGBUS
//! instead of failing one job. So a file is mapped only when nobody who could not already kill
//! this process can truncate it: it is at least `MAP_MIN` bytes, owned by this process's
//! effective user or by root, writable by neither group nor others (with POSIX ACLs the group
//! bits are the ACL mask, which bounds every named entry), and on a local filesystem (ext4, XFS,
//! btrfs, tmpfs, overlayfs: a network filesystem's server or other clients can truncate
//! whatever the mode says). Everything else is read with `pread`, where a short read is a clean
//! `model.manifest.changed`. An I/O error on a mapped page would also be SIGBUS: on a local
//! disk that is a hardware fault, which the operator sees anyway.
//!
//! SHA-256 comes from aws-lc-rs (already the crate's crypto; SHA-NI assembly), measured against
//! RustCrypto `sha2` and `ring` on this machine: all within noise of each other, so no second
//! SHA-256 implementation is added.
//!
//! Every job is re-checked on its open descriptor: opened `O_NONBLOCK` (a FIFO swapped in after
//! the walk cannot block the open) and `O_NOFOLLOW` unless links are allowed, it must be a
//! regular file of the size the walk saw, before and after reading, and every byte of the range
//! must be read. Any failure stops the remaining jobs and is reported with the job's index.

use crate::failure::Failure;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Bytes read per call and held per worker. Large enough that BLAKE3 can split one buffer
/// across both cores and syscalls are a rounding error, small enough that the bytes just copied
/// are still in the core's L2 when they are hashed: 128 KiB..4 MiB measured within noise of each
/// other and of BLAKE3 over `mmap`, 16 MiB 20-30 % slower (docs/benchmarks.md).
pub const BUF: usize = 1 << 20;
/// Files from this size on may be mapped; below it a read or two costs less than the mapping.
pub const MAP_MIN: u64 = 4 << 20;
/// Bytes mapped at a time: big enough for BLAKE3 to split across the cores, small enough that
/// a worker never holds more than this much of a file's address space.
pub const MAP_WINDOW: u64 = 64 << 20;
/// Local filesystems whose files only local, permitted writers can truncate (linux/magic.h).
const LOCAL_FS: [i64; 5] = [
    0xEF53,      // EXT2/3/4_SUPER_MAGIC
    0x5846_5342, // XFS_SUPER_MAGIC
    0x9123_683E, // BTRFS_SUPER_MAGIC
    0x0102_1994, // TMPFS_MAGIC
    0x794C_7630, // OVERLAYFS_SUPER_MAGIC
];
/// Upper bound on jobs in one call (the Python side allows at most this many resources).
pub const MAX_JOBS: usize = 1_000_000;
/// Upper bound on worker threads.
pub const MAX_WORKERS: usize = 256;
/// Both SHA-256 and BLAKE3 (default output length) digests are 32 bytes.
pub type Digest = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Blake3,
}

impl Algorithm {
    /// The OMS `hash_type` names (§5.2.2).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "blake3" => Some(Algorithm::Blake3),
            _ => None,
        }
    }
}

/// One byte range to digest: `len` bytes from `start` of `path`, a file the enumeration saw
/// with `file_size` bytes.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub start: u64,
    pub len: u64,
    pub file_size: u64,
}

/// Why a job could not be hashed, and which job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub index: usize,
    pub failure: Failure,
}

/// Digest every job; the result is in job order.
pub fn hash_jobs(
    jobs: &[Job],
    algorithm: Algorithm,
    workers: usize,
    follow_symlinks: bool,
) -> Result<Vec<Digest>, JobError> {
    if jobs.len() > MAX_JOBS || workers == 0 || workers > MAX_WORKERS {
        return Err(JobError {
            index: 0,
            failure: Failure::new(
                "model.manifest.bad_parameters",
                format!(
                    "{} jobs on {workers} workers (at most {MAX_JOBS} on 1..={MAX_WORKERS})",
                    jobs.len()
                ),
            ),
        });
    }
    for (index, job) in jobs.iter().enumerate() {
        let end = job.start.checked_add(job.len);
        if end.is_none_or(|e| e > job.file_size) {
            return Err(JobError {
                index,
                failure: Failure::new(
                    "model.manifest.bad_parameters",
                    format!("range {}+{} is outside the file", job.start, job.len),
                ),
            });
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("sealgate-hash-{i}"))
        .build()
        .map_err(|e| JobError {
            index: 0,
            failure: Failure::new("model.manifest.unreadable", format!("no hash threads: {e}")),
        })?;

    // Longest first; ties keep job order so a run is reproducible.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].len));
    let results: Vec<OnceLock<Digest>> = (0..jobs.len()).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<JobError>> = Mutex::new(None);

    pool.scope(|scope| {
        for _ in 0..workers.min(jobs.len()) {
            scope.spawn(|_| {
                let mut buf = vec![0u8; BUF];
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = order.get(slot) else {
                        return;
                    };
                    match hash_one(&jobs[index], algorithm, follow_symlinks, &mut buf) {
                        Ok(d) => {
                            let _ = results[index].set(d);
                        }
                        Err(failure) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                            // Keep the lowest index, so the error reported does not depend on
                            // which worker got there first when several jobs fail.
                            if first.as_ref().is_none_or(|f| index < f.index) {
                                *first = Some(JobError { index, failure });
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    results
        .into_iter()
        .enumerate()
        .map(|(index, cell)| {
            cell.into_inner().ok_or_else(|| JobError {
                index,
                failure: Failure::new("model.manifest.unreadable", "job was not hashed"),
            })
        })
        .collect()
}

enum State {
    Sha256(aws_lc_rs::digest::Context),
    Blake3(Box<blake3::Hasher>),
}

impl State {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => {
                State::Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
            }
            Algorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            State::Sha256(c) => c.update(data),
            // Below a few chunks of 1 KiB the fork/join costs more than it saves.
            State::Blake3(h) if data.len() >= 128 << 10 => {
                h.update_rayon(data);
            }
            State::Blake3(h) => {
                h.update(data);
            }
        }
    }

    fn finish(self) -> Digest {
        match self {
            State::Sha256(c) => {
                let d = c.finish();
                let mut out = [0u8; 32];
                out.copy_from_slice(d.as_ref());
                out
            }
            State::Blake3(h) => *h.finalize().as_bytes(),
        }
    }
}

fn describe(job: &Job) -> String {
    job.path.to_string_lossy().into_owned()
}

fn open(job: &Job, follow_symlinks: bool) -> Result<(File, std::fs::Metadata), Failure> {
    let mut flags = libc::O_NONBLOCK;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&job.path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) && !follow_symlinks {
                Failure::new(
                    "model.manifest.symlink",
                    format!("{} became a symbolic link", describe(job)),
                )
            } else {
                Failure::new(
                    "model.manifest.unreadable",
                    format!("{}: {e}", describe(job)),
                )
            }
        })?;
    let meta = check_unchanged(&file, job)?;
    // Only a hint (read-ahead for a cold cache); failure changes nothing.
    // SAFETY: the descriptor is open for the lifetime of `file`; offsets are plain integers.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            job.start as libc::off_t,
            job.len as libc::off_t,
            libc::POSIX_FADV_SEQUENTIAL,
        );
    }
    Ok((file, meta))
}

/// Whether `file` may be mapped (module docs, "Mapping").
fn mappable(file: &File, meta: &std::fs::Metadata, job: &Job) -> bool {
    use std::os::unix::fs::MetadataExt;
    if job.len < MAP_MIN {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.mode() & 0o022 != 0 || (meta.uid() != euid && meta.uid() != 0) {
        return false;
    }
    // SAFETY: an all-zero statfs is a valid value to be overwritten; the descriptor is open.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let kind = fs.f_type as i64;
    LOCAL_FS.contains(&kind)
}

/// Feed `job`'s range to `state` through read-only mapped windows of at most `MAP_WINDOW`.
fn hash_mapped(file: &File, job: &Job, state: &mut State) -> Result<(), Failure> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1);
    let end = job.start + job.len;
    let mut pos = job.start;
    while pos < end {
        let len = (end - pos).min(MAP_WINDOW);
        let aligned = pos - pos % page; // mmap offsets are page multiples
        let skip = (pos - aligned) as usize;
        let map_len = skip + len as usize;
        // SAFETY: `mappable` established that no one but this user or root — who could kill the
        // process anyway — can truncate the file, so the mapping stays backed while it lives;
        // the range lies within the size checked on the open descriptor.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(aligned)
                .len(map_len)
                .map(file)
        }
        .map_err(|e| {
            Failure::new(
                "model.manifest.unreadable",
                format!("{}: {e}", describe(job)),
            )
        })?;
        let _ = map.advise(memmap2::Advice::Sequential);
        state.update(&map[skip..]);
        pos += len;
    }
    Ok(())
}

fn check_unchanged(file: &File, job: &Job) -> Result<std::fs::Metadata, Failure> {
    let meta = file.metadata().map_err(|e| {
        Failure::new(
            "model.manifest.unreadable",
            format!("{}: {e}", describe(job)),
        )
    })?;
    if !meta.is_file() {
        return Err(Failure::new(
            "model.manifest.not_regular",
            format!("{} is no longer a regular file", describe(job)),
        ));
    }
    if meta.len() != job.file_size {
        return Err(Failure::new(
            "model.manifest.changed",
            format!(
                "{} is {} bytes, was {} when enumerated",
                describe(job),
                meta.len(),
                job.file_size
            ),
        ));
    }
    Ok(meta)
}

fn hash_one(
    job: &Job,
    algorithm: Algorithm,
    follow_symlinks: bool,
    buf: &mut [u8],
) -> Result<Digest, Failure> {
    let (file, meta) = open(job, follow_symlinks)?;
    let mut state = State::new(algorithm);
    if mappable(&file, &meta, job) {
        hash_mapped(&file, job, &mut state)?;
        check_unchanged(&file, job)?;
        return Ok(state.finish());
    }
    let mut pos = job.start;
    let end = job.start + job.len;
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match file.read_at(&mut buf[..want], pos) {
            Ok(0) => {
                return Err(Failure::new(
                    "model.manifest.changed",
                    format!("{} ended at {pos} while hashing", describe(job)),
                ))
            }
            Ok(n) => {
                state.update(&buf[..n]);
                pos += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Failure::new(
                    "model.manifest.unreadable",
                    format!("{}: {e}", describe(job)),
                ))
            }
        }
    }
    // A file that grew (or was replaced in place) while it was read is not what was hashed.
    check_unchanged(&file, job)?;
    Ok(state.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "sealgate-modelhash-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn file(&self, name: &str, data: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::File::create(&p).unwrap().write_all(data).unwrap();
            p
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn whole(path: PathBuf, size: u64) -> Job {
        Job {
            path,
            start: 0,
            len: size,
            file_size: size,
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 % 251) as u8).collect()
    }

    #[test]
    fn sha256_and_blake3_match_one_shot_digests() {
        let dir = TempDir::new("digests");
        // Sizes around the buffer and the BLAKE3 parallel threshold.
        let sizes = [0, 1, 1023, 128 << 10, BUF - 1, BUF, BUF + 1, 2 * BUF + 7];
        let blobs: Vec<Vec<u8>> = sizes.iter().map(|&n| data(n)).collect();
        let jobs: Vec<Job> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| whole(dir.file(&format!("f{i}"), b), b.len() as u64))
            .collect();
        let sha = hash_jobs(&jobs, Algorithm::Sha256, 2, false).unwrap();
        let b3 = hash_jobs(&jobs, Algorithm::Blake3, 2, false).unwrap();
        for (i, b) in blobs.iter().enumerate() {
            let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
            assert_eq!(&sha[i][..], want.as_ref(), "sha256 size {}", b.len());
            assert_eq!(
                &b3[i],
                blake3::hash(b).as_bytes(),
                "blake3 size {}",
                b.len()
            );
        }
    }

    #[test]
    fn mapped_and_read_paths_agree() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("mapped");
        // Unaligned shard starts and a window boundary inside the range.
        let size = MAP_WINDOW as usize + 3 * MAP_MIN as usize + 12_345;
        let blob = data(size);
        let p = dir.file("w", &blob);
        let job = |start: u64, len: u64| Job {
            path: p.clone(),
            start,
            len,
            file_size: size as u64,
        };
        let jobs = [
            job(0, size as u64),
            job(4097, MAP_WINDOW + MAP_MIN + 1),
            job(size as u64 - MAP_MIN, MAP_MIN),
        ];
        let f = File::open(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        // The mapped path is taken wherever the temporary directory is a local filesystem.
        // SAFETY: as in `mappable`.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstatfs(f.as_raw_fd(), &mut fs) }, 0);
        #[allow(clippy::unnecessary_cast)]
        let local = LOCAL_FS.contains(&(fs.f_type as i64));
        assert_eq!(mappable(&f, &meta, &jobs[0]), local);
        for alg in [Algorithm::Sha256, Algorithm::Blake3] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mapped = hash_jobs(&jobs, alg, 2, false).unwrap();
            // Group-writable: someone else could truncate it, so it is read, not mapped.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
            assert!(!mappable(&f, &std::fs::metadata(&p).unwrap(), &jobs[0]));
            let read = hash_jobs(&jobs, alg, 2, false).unwrap();
            assert_eq!(mapped, read);
            for (j, d) in jobs.iter().zip(&mapped) {
                let r = &blob[j.start as usize..(j.start + j.len) as usize];
                let want = match alg {
                    Algorithm::Sha256 => {
                        let mut o = [0u8; 32];
                        o.copy_from_slice(
                            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, r).as_ref(),
                        );
                        o
                    }
                    Algorithm::Blake3 => *blake3::hash(r).as_bytes(),
                };
                assert_eq!(d, &want);
            }
        }
        // Small ranges are never mapped.
        assert!(!mappable(&f, &meta, &job(0, MAP_MIN - 1)));
    }

    #[test]
    fn shards_digest_their_range_only() {
        let dir = TempDir::new("shards");
        let blob = data(10_000);
        let p = dir.file("w", &blob);
        let jobs: Vec<Job> = (0..10_000u64)
            .step_by(3000)
            .map(|s| Job {
                path: p.clone(),
                start: s,
                len: 3000.min(10_000 - s),
                file_size: 10_000,
            })
            .collect();
        let got = hash_jobs(&jobs, Algorithm::Sha256, 3, false).unwrap();
        for (j, d) in jobs.iter().zip(&got) {
            let r = &blob[j.start as usize..(j.start + j.len) as usize];
            let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, r);
            assert_eq!(&d[..], want.as_ref());
        }
    }

    #[test]
    fn worker_count_does_not_change_results() {
        let dir = TempDir::new("workers");
        let jobs: Vec<Job> = (0..40)
            .map(|i| {
                let b = data(i * 997);
                whole(dir.file(&format!("f{i}"), &b), b.len() as u64)
            })
            .collect();
        let one = hash_jobs(&jobs, Algorithm::Blake3, 1, false).unwrap();
        let many = hash_jobs(&jobs, Algorithm::Blake3, 7, false).unwrap();
        assert_eq!(one, many);
    }

    #[test]
    fn size_change_is_refused() {
        let dir = TempDir::new("changed");
        let p = dir.file("f", &data(100));
        // Enumerated at 99 bytes, 100 now.
        let err = hash_jobs(&[whole(p.clone(), 99)], Algorithm::Sha256, 1, false).unwrap_err();
        assert_eq!(err.failure.code, "model.manifest.changed");
        let job = Job {
            path: p,
            start: 0,
            len: 50,
            file_size: 120,
        };
        let err = hash_jobs(&[job], Algorithm::Sha256, 1, false).unwrap_err();
        assert_eq!(err.failure.code, "model.manifest.changed");
    }

    #[test]
    fn missing_fifo_and_symlink_fail_with_their_index() {
        let dir = TempDir::new("refuse");
        let ok = dir.file("ok", b"x");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

        let jobs = [whole(ok.clone(), 1), whole(link.clone(), 1)];
        let err = hash_jobs(&jobs, Algorithm::Sha256, 2, false).unwrap_err();
        assert_eq!(
            (err.index, err.failure.code.as_str()),
            (1, "model.manifest.symlink")
        );
        // Allowed links are followed.
        assert!(hash_jobs(&jobs, Algorithm::Sha256, 2, true).is_ok());

        // Opened non-blocking, so the FIFO is refused instead of hanging the open.
        let jobs = [whole(ok.clone(), 1), whole(fifo, 0)];
        let err = hash_jobs(&jobs, Algorithm::Sha256, 1, false).unwrap_err();
        assert_eq!(
            (err.index, err.failure.code.as_str()),
            (1, "model.manifest.not_regular")
        );

        let jobs = [whole(dir.0.join("absent"), 0), whole(ok, 1)];
        let err = hash_jobs(&jobs, Algorithm::Sha256, 2, false).unwrap_err();
        assert_eq!(
            (err.index, err.failure.code.as_str()),
            (0, "model.manifest.unreadable")
        );
    }

    #[test]
    fn bounds_are_checked() {
        assert!(hash_jobs(&[], Algorithm::Sha256, 0, false).is_err());
        assert!(hash_jobs(&[], Algorithm::Sha256, MAX_WORKERS + 1, false).is_err());
        assert!(hash_jobs(&[], Algorithm::Sha256, 1, false)
            .unwrap()
            .is_empty());
        let j = Job {
            path: PathBuf::from("/nonexistent"),
            start: u64::MAX,
            len: 2,
            file_size: u64::MAX,
        };
        let err = hash_jobs(&[j], Algorithm::Sha256, 1, false).unwrap_err();
        assert_eq!(err.failure.code, "model.manifest.bad_parameters");
        assert_eq!(Algorithm::from_name("sha256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_name("blake2"), None);
    }
}
