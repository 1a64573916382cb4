//! The embedded provider under hostile storage: real write failures and damaged journals, no
//! mocks. A child process (this binary, `DOCSTORE_HOSTILE_CHILD` set) saves ~1 KB documents,
//! single and bulk, until a write fails: under `RLIMIT_FSIZE` 4 MiB with `SIGXFSZ` ignored
//! (`EFBIG`, as on a full disk: `disk_full_rlimit`), or on an 8 MiB tmpfs (a genuine
//! `ENOSPC`: `disk_full_tmpfs`, skipped with the reason where mounting is not permitted).
//! The failure must be a `Storage` error naming the store and the OS cause, never a panic or
//! a hang (calls are bounded); the same process must still read all it acknowledged (`get`,
//! `list_page`, `changes`); reopened without the limit (the tmpfs grown, after a look at the
//! still-full disk), the store must hold every acknowledged write at its revision and take
//! new writes. `new_store_on_full_disk`: creating a store under the limit fails clearly, and
//! the directory opens once the limit is gone. `torn_tail_garbage`: a torn batch written
//! after the newest journal's last batch; `torn_tail_truncated`: that journal cut by 5 bytes
//! after two `Durability::Buffered` batches. Either way the store must reopen with every
//! acknowledged durable write (and the intact buffered batch, and none of the torn one).
//!
//! Figures (counts, error texts, reopen results) go to stderr, for the README.
//! `harness = false`: a child process re-running the binary needs control of `main`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docstore::serde_json::json;
use docstore::{DatabaseService, Document, Durability, EmbeddedConfig, EmbeddedProvider};
use docstore::{Error, Rev, WriteResult};

const DB: &str = "hostile";
const CASES: [&str; 5] = [
    "disk_full_rlimit",
    "disk_full_tmpfs",
    "torn_tail_garbage",
    "torn_tail_truncated",
    "new_store_on_full_disk",
];
/// The child's file size limit. Reopening a store needs less; creating one needs more: fjall
/// preallocates each new journal with `set_len(64 MiB)`.
const FSIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// A call taking longer than this is a hang.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// Acknowledged writes: document id to revision.
type Acked = BTreeMap<String, Rev>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // None is ignored: `--list --ignored` (as nextest asks) lists nothing.
        if !args.iter().any(|a| a == "--ignored") {
            CASES.iter().for_each(|c| println!("{c}: test"));
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(path) = std::env::var("DOCSTORE_HOSTILE_CHILD") {
        child_setup();
        return runtime.block_on(child(Path::new(&path)));
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    for case in CASES {
        let hit = |f: &&String| case == f.as_str() || (!exact && case.contains(f.as_str()));
        if !filters.is_empty() && !filters.iter().any(hit) {
            continue;
        }
        let started = Instant::now();
        runtime.block_on(async {
            match case {
                "disk_full_rlimit" => disk_full_rlimit().await,
                "disk_full_tmpfs" => disk_full_tmpfs().await,
                "torn_tail_garbage" => torn_tail(false).await,
                "torn_tail_truncated" => torn_tail(true).await,
                _ => new_store_on_full_disk().await,
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!("test {case} ... ok ({secs:.1}s)");
    }
}

/// Awaits `fut`; a hang ends the process (a stuck blocking task would keep the runtime from
/// shutting down after a panic).
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let Ok(value) = tokio::time::timeout(CALL_LIMIT, fut).await else {
        println!("HANG {what} did not return within {CALL_LIMIT:?}");
        eprintln!("HANG: {what} did not return within {CALL_LIMIT:?}");
        std::process::exit(3);
    };
    value
}

/// `[kind] message`, on one line.
fn text(e: &Error) -> String {
    format!("[{}] {}", e.kind(), e.to_string().replace('\n', " "))
}

async fn open(path: &Path, durability: Durability) -> Result<EmbeddedProvider, Error> {
    let mut config = EmbeddedConfig::new(path);
    config.durability = durability;
    bounded("open", EmbeddedProvider::open(config)).await
}

/// ~1 KB of incompressible body, carrying `_id` when given (for bulk saves).
fn body(id: Option<String>) -> Document {
    let pad: String = (0..1000).map(|_| fastrand::alphanumeric()).collect();
    let mut doc = Document::from_value(json!({"pad": pad})).expect("object");
    if let Some(id) = id {
        doc.insert("_id", id);
    }
    doc
}

async fn save(store: &EmbeddedProvider, id: &str) -> Result<(String, Rev), Error> {
    let w = bounded("save", store.save(DB, id, body(None))).await?;
    Ok((w.id, w.rev))
}

type Written = Result<Vec<(String, Rev)>, Error>;

async fn save_bulk(store: &EmbeddedProvider, ids: impl Iterator<Item = String>) -> Written {
    let docs = ids.map(|id| body(Some(id))).collect();
    let results = bounded("save_many", store.save_many(DB, docs)).await?;
    let pair = |w: WriteResult| (w.id, w.rev);
    results.into_iter().map(|r| r.map(pair)).collect()
}

/// In the child: a last-resort alarm, and the file size limit with `SIGXFSZ` ignored, if
/// asked.
fn child_setup() {
    // SAFETY: plain libc calls on this process's own alarm, signal disposition and limits.
    unsafe {
        libc::alarm(600);
        if let Ok(limit) = std::env::var("DOCSTORE_HOSTILE_FSIZE") {
            let limit = limit.parse().expect("limit");
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0, "setrlimit");
        }
    }
}

/// The child: with `DOCSTORE_HOSTILE_FRESH`, only opens (creates) the store; otherwise writes
/// until a write fails (`ACK id rev` for each acknowledged one), then reads everything back.
async fn child(path: &Path) {
    let store = match open(path, Durability::Sync).await {
        Ok(_) if std::env::var("DOCSTORE_HOSTILE_FRESH").is_ok() => {
            return println!("FRESH opened");
        }
        Err(e) => return println!("OPEN {}", text(&e)),
        Ok(store) => store,
    };
    let mut acked = Acked::new();
    for i in 0u64..100_000 {
        let outcome = match i % 5 {
            4 => save_bulk(&store, (0..8).map(|k| format!("b{i}-{k}"))).await,
            // New documents, and updates of four old ones.
            0 | 1 => save(&store, &format!("s{i}")).await.map(|w| vec![w]),
            _ => save(&store, &format!("u{}", i % 10)).await.map(|w| vec![w]),
        };
        match outcome {
            Ok(written) => written.into_iter().for_each(|(id, rev)| {
                println!("ACK {id} {rev}");
                acked.insert(id, rev);
            }),
            Err(e) => {
                println!("FAIL {}", text(&e));
                match verify(&store, &acked).await {
                    Ok(summary) => println!("READS ok, {summary}"),
                    Err(e) => println!("READS bad: {e}"),
                }
                let next = save(&store, "after").await;
                let next = next.map_or_else(|e| text(&e), |w| w.1.to_string());
                println!("AFTER {next}");
                let dropped = tokio::task::spawn_blocking(move || drop(store));
                bounded("drop", dropped).await.expect("drop");
                return println!("DROPPED");
            }
        }
    }
    println!("NOFAIL");
}

/// Every acknowledged document through `get`, `list_page` and `changes`: a summary, or what
/// is wrong.
async fn verify(store: &EmbeddedProvider, acked: &Acked) -> Result<String, String> {
    let page = bounded("list_page", store.list_page(DB, None, 1_000_000)).await;
    let page = page.map_err(|e| format!("list_page: {e}"))?.docs;
    let listed: BTreeMap<_, _> = page.iter().map(|d| (d.id(), d.rev())).collect();
    let changes = bounded("changes", store.changes(DB, None, 1_000_000)).await;
    let changes = changes.map_err(|e| format!("changes: {e}"))?.results;
    let feed: BTreeMap<&str, &Rev> = changes.iter().map(|c| (c.id.as_str(), &c.rev)).collect();
    for (id, rev) in acked {
        let doc = bounded("get", store.get(DB, id)).await;
        let doc = doc.map_err(|e| format!("acknowledged {id} at {rev} unreadable: {e}"))?;
        if doc.rev() != Some(rev.to_string().as_str()) {
            return Err(format!("{id} is at {:?}, acknowledged at {rev}", doc.rev()));
        }
        if listed.get(&Some(id.as_str())) != Some(&Some(rev.to_string().as_str())) {
            return Err(format!("{id} at {rev} missing from list_page"));
        }
        if feed.get(id.as_str()) != Some(&rev) {
            return Err(format!("{id} at {rev} missing from changes"));
        }
    }
    let (got, listed, fed) = (acked.len(), listed.len(), changes.len());
    Ok(format!("get {got}, list_page {listed}, changes {fed}"))
}

/// Runs the child on `path`; its stdout lines. Its stderr is relayed (a file size limit must
/// not apply to this process's stderr, which may be a file).
fn run_child(path: &Path, envs: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.env("DOCSTORE_HOSTILE_CHILD", path);
    let out = cmd.envs(envs.iter().copied()).output();
    let out = out.expect("run the child");
    for l in String::from_utf8_lossy(&out.stderr).lines() {
        eprintln!("  child: {l}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout.lines().map(Into::into).collect();
    let hang = lines.iter().find(|l| l.starts_with("HANG"));
    assert!(hang.is_none(), "the provider hung: {hang:?}");
    let status = out.status;
    assert!(status.success(), "the child failed (panicked?): {status}");
    lines
}

fn line<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    let found = lines.iter().find_map(|l| l.strip_prefix(prefix));
    found.map(str::trim_start)
}

/// Runs the writer child (`envs`), checks its failure and reads, then (after `make_room`)
/// reopens the store and checks every acknowledged write, and new writes.
async fn fill_and_recover(
    path: &Path,
    envs: &[(&str, &str)],
    cause: &str,
    label: &str,
    make_room: impl AsyncFnOnce(&mut Acked),
) {
    // Created here, unhindered: a new store preallocates a 64 MiB journal.
    let created = open(path, Durability::Sync).await;
    drop(created.expect("create the store"));
    let lines = run_child(path, envs);
    let (mut acked, mut acks) = (Acked::new(), 0);
    for l in &lines {
        if let ["ACK", id, rev] = l.split(' ').collect::<Vec<_>>()[..] {
            acked.insert(id.to_owned(), Rev::parse(rev).expect("rev"));
            acks += 1;
        }
    }
    let fail = line(&lines, "FAIL").unwrap_or("-");
    let reads = line(&lines, "READS").unwrap_or("-");
    let has = |prefix| line(&lines, prefix).is_some();
    let named = fail.contains(&path.display().to_string());
    let checks = [
        (!has("OPEN"), "the child opens the store"),
        (!has("NOFAIL"), "a write fails in the end"),
        (fail.starts_with("[storage]"), "a Storage error"),
        (named, "the error names the store"),
        (fail.contains(cause), "the error gives the OS cause"),
        (reads.starts_with("ok"), "reads served afterwards"),
        (has("DROPPED"), "the store drops after the failure"),
    ];
    for (ok, what) in checks {
        assert!(ok, "{label}: expected {what}: {fail}; {reads}");
    }
    let (docs, after) = (acked.len(), line(&lines, "AFTER").unwrap_or("-"));
    eprintln!("{label}: {acks} writes acknowledged ({docs} documents), then: {fail}");
    eprintln!("{label}: in the same process then: reads {reads}; the next write: {after}");
    make_room(&mut acked).await;
    let store = open(path, Durability::Sync).await;
    let store = store.unwrap_or_else(|e| panic!("{label}: the store does not reopen: {e}"));
    let summary = verify(&store, &acked).await;
    let summary = summary.unwrap_or_else(|e| panic!("{label}: acknowledged data lost: {e}"));
    let single = save(&store, "new").await;
    let bulk = save_bulk(&store, (0..8).map(|k| format!("new-bulk{k}"))).await;
    let ok = single.is_ok() && bulk.is_ok();
    assert!(ok, "{label}: new writes fail: {single:?} {bulk:?}");
    eprintln!("{label}: reopened; every acknowledged write there ({summary}); new writes ok");
}

async fn disk_full_rlimit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envs = [("DOCSTORE_HOSTILE_FSIZE", &*FSIZE_LIMIT.to_string())];
    let label = "disk full (RLIMIT_FSIZE 4 MiB, EFBIG)";
    let path = dir.path().join("store");
    fill_and_recover(&path, &envs, "File too large", label, async |_| {}).await;
}

async fn new_store_on_full_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let limit = FSIZE_LIMIT.to_string();
    let envs = [
        ("DOCSTORE_HOSTILE_FSIZE", &*limit),
        ("DOCSTORE_HOSTILE_FRESH", "1"),
    ];
    let lines = run_child(&path, &envs);
    let first = line(&lines, "OPEN").or(line(&lines, "FRESH"));
    let first = first.expect("the child's open");
    eprintln!("new store under RLIMIT_FSIZE 4 MiB: {first}");
    let clear = first.starts_with("[storage]") && first.contains("File too large");
    assert!(clear, "creating a store under the limit: {first}");
    // What the failed creation left behind (nothing, once it cleans up after itself).
    let left = std::fs::read_dir(&path).into_iter().flatten().flatten();
    let mut left: Vec<_> = left.map(|e| e.file_name()).collect();
    left.sort();
    let again = open(&path, Durability::Sync).await.map_err(|e| text(&e));
    let shown = again.as_ref().err().map_or("opens", String::as_str);
    eprintln!("then without the limit: {shown} (the failed open left {left:?})");
    assert!(
        again.is_ok(),
        "a store whose creation failed for lack of space never opens again, even with space \
         back: the failed open left {left:?} in {}, and every later open fails with: {}",
        path.display(),
        again.err().unwrap_or_default()
    );
}

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(CString);

impl Tmpfs {
    fn mount(target: &Path, options: &str, flags: libc::c_ulong) -> std::io::Result<Self> {
        let target = CString::new(target.as_os_str().as_bytes()).expect("path");
        let (fs, options) = (c"tmpfs".as_ptr(), CString::new(options).expect("options"));
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe { libc::mount(fs, target.as_ptr(), fs, flags, options.as_ptr().cast()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs(target))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

async fn disk_full_tmpfs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    let label = "disk full (8 MiB tmpfs, ENOSPC)";
    let _mounted = match Tmpfs::mount(&mnt, "size=8m", 0) {
        Ok(mounted) => mounted,
        Err(e) => return eprintln!("{label}: not run: mounting a tmpfs is not permitted ({e})"),
    };
    let path = mnt.join("store");
    let make_room = async |acked: &mut Acked| {
        // First on the still-full disk: does it open, serve reads, refuse writes clearly?
        match open(&path, Durability::Sync).await {
            Ok(store) => {
                let reads = verify(&store, acked).await;
                assert!(
                    reads.is_ok(),
                    "{label}: unreadable on a full disk: {reads:?}"
                );
                let write = save(&store, "full").await;
                let shown = write.as_ref().map_or_else(text, |w| w.1.to_string());
                eprintln!("{label}: reopened on the full disk: reads {reads:?}; a write: {shown}");
                acked.extend(write.ok());
            }
            Err(e) => eprintln!("{label}: reopening on the full disk: {}", text(&e)),
        }
        let grown = Tmpfs::mount(&mnt, "size=64m", libc::MS_REMOUNT).expect("grow the tmpfs");
        std::mem::forget(grown); // `_mounted` unmounts it
        eprintln!("{label}: tmpfs grown to 64 MiB");
    };
    fill_and_recover(&path, &[], "No space left on device", label, make_room).await;
}

/// fjall 3 keeps its write-ahead journal as `<n>.jnl` files in the store's root directory
/// (beside `keyspaces/`, `lock` and `version`); the highest number is the active journal,
/// lower ones are sealed, waiting for their memtables' flush. Their names, and the newest.
fn newest_journal(store: &Path) -> (Vec<String>, PathBuf) {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(store)
        .expect("store dir")
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_str()?.strip_suffix(".jnl")?.parse().ok()?,
                e.path(),
            ))
        })
        .collect();
    found.sort();
    let names = found.iter().map(|(n, _)| format!("{n}.jnl")).collect();
    (names, found.pop().expect("a journal").1)
}

/// Where the journal's batches end. A new journal is preallocated (64 MiB of zeros) and
/// written from its start, and every batch ends with the trailer `FJL\x03`, so the data ends
/// after the last nonzero byte. (Bytes appended after the zeros would never be read:
/// recovery stops at the first zeros, so the damage goes here.)
fn data_end(journal: &Path) -> u64 {
    let bytes = std::fs::read(journal).expect("read journal");
    let last = bytes.iter().rposition(|b| *b != 0);
    last.map_or(0, |p| p as u64 + 1)
}

async fn torn_tail(cut: bool) {
    let label = match cut {
        true => "torn tail (buffered batch cut short)",
        false => "torn tail (torn batch after the last)",
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let store = open(&path, Durability::Sync).await.expect("open");
    let mut acked = Acked::new();
    for i in 0..30u64 {
        acked.extend([save(&store, &format!("d{}", i % 12)).await.expect("save")]);
    }
    let bulk = save_bulk(&store, (0..10).map(|k| format!("bulk{k}"))).await;
    acked.extend(bulk.expect("bulk"));
    drop(store);
    let mut torn = Vec::new();
    if cut {
        let store = open(&path, Durability::Buffered).await.expect("buffered");
        acked.extend([save(&store, "buffered-intact").await.expect("save")]);
        let ids = (0..5).map(|k| format!("buffered-torn{k}"));
        torn = save_bulk(&store, ids).await.expect("buffered bulk");
        drop(store);
    }
    let (names, newest) = newest_journal(&path);
    let end = data_end(&newest);
    let file = std::fs::OpenOptions::new().write(true).open(&newest);
    let mut file = file.expect("journal");
    if cut {
        // Into the last batch's end marker: that batch is torn, the ones before it intact.
        file.set_len(end - 5).expect("truncate");
    } else {
        // A batch start (tag 1, 3 items, a seqno), then an item (tag 2) whose header promises
        // a 9-byte key and a 200-byte value, and fewer bytes than that before the zeros.
        let mut torn_batch = vec![1u8, 3, 0, 0, 0];
        torn_batch.extend(u64::MAX.to_le_bytes());
        torn_batch.extend([
            2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, 0, 0, 0, 200, 0, 0, 0,
        ]);
        torn_batch.extend(b"torn-key!");
        torn_batch.extend((0..150u32).map(|i| (i * 37 + 11) as u8));
        file.seek(SeekFrom::Start(end)).expect("seek");
        file.write_all(&torn_batch).expect("write the torn batch");
    }
    file.sync_all().expect("sync journal");
    drop(file);
    let store = open(&path, Durability::Sync).await;
    let store = store.unwrap_or_else(|e| panic!("{label}: does not reopen: {}", text(&e)));
    let recovered = std::fs::metadata(&newest).expect("journal").len();
    let summary = verify(&store, &acked).await;
    let summary = summary.unwrap_or_else(|e| panic!("{label}: acknowledged data lost: {e}"));
    for (id, _) in &torn {
        let got = bounded("get", store.get(DB, id)).await;
        let absent = got.as_ref().is_err_and(Error::is_not_found);
        assert!(absent, "{label}: {id} of the torn batch: {got:?}");
    }
    let w = save(&store, "after-torn").await;
    assert!(w.is_ok(), "{label}: a new write fails: {w:?}");
    let torn = match cut {
        true => format!(", all {} of the torn batch absent", torn.len()),
        false => String::new(),
    };
    eprintln!(
        "{label}: journals {names:?}, the newest with {end} data bytes, recovered to \
         {recovered}; reopened: {summary}{torn}; new writes ok"
    );
}
