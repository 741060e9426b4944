//! Reading a file whose size is not trusted: the one way the host and the CLI read a plan,
//! an event, a config, settings or a manifest. The cap is enforced while reading (at most
//! one byte past it is read), not by the size the file system reports, so a FIFO, a
//! device such as `/dev/zero` or a file that grows while it is read is refused too, before
//! anything of the size claimed is allocated.

use std::io::Read;
use std::path::Path;

/// The cap on an operator's own files (the serve config, capability settings and grants,
/// trusted keys, package manifests, the secrets key): far above any real one, far below
/// what would hurt to hold in memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

/// Why a file was not read: it could not be, or it is larger than the cap.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than the limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
}

/// The file's bytes, if it holds at most `limit` of them.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let shown = || path.display().to_string();
    let io = |source| ReadError::Io {
        path: shown(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: shown(),
            limit,
        });
    }
    Ok(bytes)
}

/// The file's text, if it holds at most `limit` bytes of UTF-8.
pub fn read_text_capped(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, limit)?).map_err(|_| ReadError::NotText {
        path: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_the_cap_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        // Sparse: 64 GiB by its size, nothing on disk; read whole it would exhaust memory.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(64 << 30).unwrap();
        let e = read_text_capped(&path, 1024).unwrap_err();
        assert!(matches!(&e, ReadError::TooLarge { limit: 1024, .. }), "{e}");
        assert!(e.to_string().contains("big.yaml"), "{e}");
        std::fs::write(&path, "name: x\n").unwrap();
        assert_eq!(read_text_capped(&path, 8).unwrap(), "name: x\n");
        assert!(read_text_capped(&path, 7).is_err());
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_text_capped(&path, 8),
            Err(ReadError::NotText { .. })
        ));
    }

    /// A device that never ends (and that reports a size of 0) is refused at the cap.
    #[cfg(unix)]
    #[test]
    fn an_endless_device_is_refused_at_the_cap() {
        let e = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
    }
}
