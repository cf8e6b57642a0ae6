//! The store directory: `store.json`, `store.lock`, `partitions/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::{parse_file_name, FileKind};

/// Version in `store.json` of stores this natrec creates: 2 since sealed
/// partitions are written in format v2 (a natrec that reads only v1 refuses
/// the store with "written by a newer natrec; upgrade natrec" instead of
/// failing on each new partition). Stores with version 1 are still opened;
/// their new partitions are sealed in v2 next to the v1 ones
/// (docs/FORMAT.md).
pub const STORE_VERSION: u32 = 2;
use crate::model::{HoldTimes, NANOS_PER_SEC};
use crate::reader::Reader;
use crate::writer::Writer;
use crate::{fsutil, StoreError};

/// Name of the store's description file.
pub const STORE_JSON: &str = "store.json";
/// Name of the writer's lock file.
pub const STORE_LOCK: &str = "store.lock";
/// Name of the directory holding partition files.
pub const PARTITIONS_DIR: &str = "partitions";
/// `format` value in `store.json`.
pub const STORE_FORMAT: &str = "natrec-store";

/// Smallest partition span accepted (60 s): shorter spans only make more files.
pub const PARTITION_SPAN_S_MIN: u32 = 60;
/// Largest partition span accepted (7 days): a sealed partition is sorted in
/// memory, and longer spans make lookups read more.
pub const PARTITION_SPAN_S_MAX: u32 = 7 * 86_400;

/// How a store partitions and keeps time. Stored in `store.json` when the
/// store is created; opening a store uses the stored values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Length of one partition, seconds (default 3600 = one hour).
    pub partition_span_s: u32,
    /// How long after a partition's end it stays writable before it is
    /// sealed, seconds (default 60).
    pub grace_s: u32,
    /// Longest time appended records stay only in memory, milliseconds
    /// (default 1000): the bound on data lost at power failure.
    pub flush_interval_ms: u32,
    /// Hold times deciding how long a mapping is held after its last packet.
    pub hold: HoldTimes,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            partition_span_s: 3600,
            grace_s: 60,
            flush_interval_ms: 1000,
            hold: HoldTimes::default(),
        }
    }
}

impl StoreConfig {
    /// Partition span in ns.
    pub fn span_ns(&self) -> i64 {
        i64::from(self.partition_span_s) * NANOS_PER_SEC
    }

    /// Grace in ns.
    pub fn grace_ns(&self) -> i64 {
        i64::from(self.grace_s) * NANOS_PER_SEC
    }

    fn check(&self, path: &Path) -> Result<(), StoreError> {
        let span = self.partition_span_s;
        if !(PARTITION_SPAN_S_MIN..=PARTITION_SPAN_S_MAX).contains(&span) {
            return Err(StoreError::Config {
                path: path.to_path_buf(),
                detail: format!("partition_span_s is {span}, must be {PARTITION_SPAN_S_MIN}..={PARTITION_SPAN_S_MAX}"),
            });
        }
        if 86_400 % span != 0 && !span.is_multiple_of(86_400) {
            return Err(StoreError::Config {
                path: path.to_path_buf(),
                detail: format!("partition_span_s is {span}, must divide a day (86400) or be whole days, so partitions start at the same times every day"),
            });
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    config: StoreConfig,
}

/// A store on disk. Cheap to hold; get a [`Writer`] to append or a
/// [`Reader`] to look up.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    cfg: StoreConfig,
}

impl Store {
    /// Creates a store in `dir` (created if missing; if it exists it must be
    /// empty). Fails if a store already exists there.
    pub fn create(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.check(dir)?;
        let json = dir.join(STORE_JSON);
        if json.exists() {
            return Err(StoreError::Exists {
                path: dir.to_path_buf(),
                detail: "a natrec store already exists here".into(),
            });
        }
        if dir.exists() {
            let mut entries = fs::read_dir(dir).map_err(StoreError::io(dir, "read directory"))?;
            if entries.next().is_some() {
                return Err(StoreError::Exists {
                    path: dir.to_path_buf(),
                    detail: "the directory is not empty and is not a natrec store".into(),
                });
            }
        }
        fs::create_dir_all(dir.join(PARTITIONS_DIR))
            .map_err(StoreError::io(dir.join(PARTITIONS_DIR), "create directory"))?;
        fsutil::fsync_dir(dir)?;
        let file = StoreFile {
            format: STORE_FORMAT.into(),
            version: STORE_VERSION,
            config: cfg,
        };
        let mut text = serde_json::to_string_pretty(&file).expect("StoreFile serializes");
        text.push('\n');
        // store.json is published last: a crash before it leaves a directory
        // that is not (yet) a store, never a half-made one.
        fsutil::publish(&json, &[text.as_bytes()])?;
        Ok(Store {
            dir: dir.to_path_buf(),
            cfg,
        })
    }

    /// Opens an existing store.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let json = dir.join(STORE_JSON);
        let text = match fs::read_to_string(&json) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: json,
                    op: "read",
                    source: e,
                })
            }
        };
        let bad = |detail: String| StoreError::Config {
            path: json.clone(),
            detail,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(STORE_FORMAT) {
            return Err(bad(format!(
                "\"format\" is {:?}, expected \"{STORE_FORMAT}\"",
                v.get("format")
            )));
        }
        let version = v
            .get("version")
            .and_then(|f| f.as_u64())
            .ok_or_else(|| bad("\"version\" missing".into()))?;
        if version > u64::from(STORE_VERSION) {
            return Err(StoreError::Version {
                path: json,
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: STORE_VERSION,
            });
        }
        let file: StoreFile = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        file.config.check(&json)?;
        let parts = dir.join(PARTITIONS_DIR);
        if !parts.is_dir() {
            return Err(StoreError::Corrupt {
                path: parts,
                offset: 0,
                field: "partitions directory",
                detail: "missing".into(),
            });
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            cfg: file.config,
        })
    }

    /// Opens the store in `dir`, or creates it with `cfg` when `dir` has no
    /// `store.json`. An existing store keeps its stored configuration.
    pub fn open_or_create(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        if dir.join(STORE_JSON).exists() {
            Store::open(dir)
        } else {
            Store::create(dir, cfg)
        }
    }

    /// The stored configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the writer lock and recovers after any crash (see
    /// docs/FORMAT.md). Fails with [`StoreError::Locked`] if another writer
    /// holds the store.
    pub fn writer(&self) -> Result<Writer, StoreError> {
        Writer::open(self.dir.clone(), self.cfg)
    }

    /// A reader; any number may run, also while a writer appends.
    pub fn reader(&self) -> Reader {
        Reader::new(self.dir.clone(), self.cfg)
    }
}

/// One partition file found in `partitions/`.
#[derive(Clone, Debug)]
pub(crate) struct PartFile {
    pub path: PathBuf,
    pub name: String,
    pub start_ns: i64,
    pub segment: u32,
    pub kind: FileKind,
}

/// Lists partition files, sorted by (start, segment, kind). Files whose
/// names do not parse (temp files, strangers) are ignored.
pub(crate) fn list_partitions(parts_dir: &Path) -> Result<Vec<PartFile>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(parts_dir).map_err(StoreError::io(parts_dir, "read directory"))? {
        let entry = entry.map_err(StoreError::io(parts_dir, "read directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((start_ns, segment, kind)) = parse_file_name(name) {
            out.push(PartFile {
                path: entry.path(),
                name: name.to_string(),
                start_ns,
                segment,
                kind,
            });
        }
    }
    out.sort_by_key(|f| (f.start_ns, f.segment, f.kind));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("s");
        let cfg = StoreConfig {
            partition_span_s: 600,
            ..StoreConfig::default()
        };
        Store::create(&dir, cfg).unwrap();
        let text = fs::read_to_string(dir.join(STORE_JSON)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["format"], "natrec-store");
        assert_eq!(v["version"], STORE_VERSION);
        assert_eq!(v["partition_span_s"], 600);
        assert_eq!(v["hold"]["tcp_open_s"], 7440);
        assert_eq!(Store::open(&dir).unwrap().config(), &cfg);
        assert!(matches!(
            Store::create(&dir, cfg),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(
            Store::open_or_create(&dir, StoreConfig::default())
                .unwrap()
                .config()
                .partition_span_s,
            600
        );

        let e = Store::open(d.path()).unwrap_err();
        assert!(matches!(e, StoreError::NotAStore { .. }));
        assert!(e.to_string().contains("natrec replay --store DIR"), "{e}");
        fs::write(d.path().join("junk"), "x").unwrap();
        assert!(matches!(
            Store::create(d.path(), cfg),
            Err(StoreError::Exists { .. })
        ));

        // A store written before format v2 (version 1) still opens.
        let older = text.replace("\"version\": 2", "\"version\": 1");
        assert_ne!(older, text);
        fs::write(dir.join(STORE_JSON), &older).unwrap();
        assert_eq!(Store::open(&dir).unwrap().config(), &cfg);
        let newer = text.replace("\"version\": 2", "\"version\": 3");
        fs::write(dir.join(STORE_JSON), newer).unwrap();
        let e = Store::open(&dir).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Version {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("upgrade"), "{e}");

        let bad = StoreConfig {
            partition_span_s: 7,
            ..cfg
        };
        assert!(matches!(
            Store::create(&d.path().join("t"), bad),
            Err(StoreError::Config { .. })
        ));
        let bad = StoreConfig {
            partition_span_s: 7000,
            ..cfg
        };
        assert!(matches!(
            Store::create(&d.path().join("t"), bad),
            Err(StoreError::Config { .. })
        ));
    }
}
