//! Files: torch `state_dict`s as safetensors, arrays as `.npy`.
//!
//! Writers never leave a partial file behind: they write a temporary file beside the
//! target and rename it into place at the end.

pub mod npy;
pub mod safetensors;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, renamed
/// over `path` once complete.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".recurrent-").suffix(".tmp");
    // tempfile creates 0600 files; an output file should get the usual 0666 & !umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io_err)?;
    {
        let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut writer)?;
        writer.flush().map_err(io_err)?;
    }
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}
