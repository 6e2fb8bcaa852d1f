//! Files: torch `state_dict`s as safetensors, arrays as `.npy`.
//!
//! # Writing: all or nothing
//!
//! Every writer goes through an [`OutputSet`]: each output is first written in full to a
//! temporary file (beside its target, so that the final rename stays on one file
//! system), and only when every output of the set has been written are they moved into
//! place together. A failure at any point — a missing folder, a full disk, a second
//! output that cannot be created — leaves every file that existed before byte-identical
//! and creates none: targets that are replaced are kept as hard links until the whole
//! set is in place, and put back if a later one fails.
//!
//! Targets that are not regular files are never replaced: a character device
//! (`/dev/null`) or a FIFO is opened before anything is renamed and written in place
//! after the regular files are in place; a directory, a block device or a socket is
//! refused. `-` and `/dev/stdout` write to standard output as the shell opened it. A
//! symbolic link is followed, so the file it points to is replaced (keeping its
//! permissions), not the link.
//! Two outputs of one set that name the same file are refused. Every message names the
//! caller's path, never a temporary file.

pub mod npy;
pub mod onnx;
mod raw;
pub mod safetensors;
mod state_dict;
mod torch;

pub use state_dict::{FileFormat, StateDict, StoredDtype};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Kind;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::module::{Gru, Layer, Lstm, Rnn};
use crate::params::Layers;

/// Loads the recurrent layer a torch state dict holds, whatever its kind (RNN, LSTM or
/// GRU, told apart by the tensors' shapes), as a [`Layer`] to match on. When the kind is
/// known, `Rnn::load`, `Lstm::load` and `Gru::load` return the layer type directly.
///
/// - `path`: a safetensors file, as `safetensors.torch.save_file(model.state_dict(),
///   path)` or [`safetensors::save`] write it.
/// - `prefix`: the layer's key prefix (`"encoder.rnn."` for a layer inside a bigger
///   model), or `None` to find it: the one prefix under which the file holds a
///   recurrent layer.
///
/// The tensors cannot show `batch_first`, `nonlinearity` and `dropout`: they come from
/// the file's metadata, and are torch's defaults (`false`, `tanh`, `0`) where it does
/// not record them ([`StateDict::records`] tells which).
///
/// ```no_run
/// use recurrent::Layer;
/// let layer = recurrent::load::<f32>("model.safetensors", None)?;
/// println!("{}", layer.config()); // e.g. LSTM(10, 20, num_layers=2, batch_first=True)
/// if let Layer::Lstm(lstm) = layer {
///     // lstm.forward(...)
/// }
/// # Ok::<(), recurrent::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] / [`Error::Format`] naming `path` when it cannot be read or is not a
/// state dict; [`Error::NoRnnFound`] / [`Error::AmbiguousPrefix`] when no prefix holds
/// a recurrent layer or several do; [`Error::UnsupportedModel`] for tensors of no
/// recurrent kind; [`Error::MissingParameter`], [`Error::UnexpectedParameter`],
/// [`Error::ParameterShape`] when the tensors are not a complete layer; a
/// [`Error::Metadata`] value that is not an option's.
pub fn load<T: Float>(path: impl AsRef<Path>, prefix: Option<&str>) -> Result<Layer<T>> {
    load_layers(path.as_ref(), prefix).map(Layer::from_layers)
}

/// `Rnn::load`, `Lstm::load`, `Gru::load`: [`load_layers`], then the kind checked. They
/// live here, beside the loading path, so that the layer types do not depend on `io`.
macro_rules! load_as {
    ($ty:ident, $kind:expr) => {
        impl<T: Float> $ty<T> {
            #[doc = concat!(
                "Loads the ", stringify!($ty), " a torch state dict holds, in one call: the ",
                "file is read, the layer's key prefix found (`prefix: None`) or checked, its ",
                "configuration inferred from the tensors and the file's metadata (torch's ",
                "defaults for `batch_first`, `nonlinearity` and `dropout` where the file ",
                "does not record them), and its tensors converted to `T`.\n\n",
                "Reads safetensors files written by `safetensors.torch.save_file(model.state_dict(), path)` ",
                "or by [`crate::io::safetensors::save`]. For a file whose kind is not known in advance, ",
                "use [`crate::load`].\n\n",
                "```no_run\n",
                "let layer = recurrent::", stringify!($ty), "::<f32>::load(\"model.safetensors\", None)?;\n",
                "println!(\"{}\", layer.config());\n",
                "# Ok::<(), recurrent::Error>(())\n",
                "```\n\n",
                "# Errors\n",
                "[`Error::WrongKind`] naming the right call when the file holds another kind; ",
                "[`Error::Io`] / [`Error::Format`] for an unreadable file; ",
                "[`Error::MissingParameter`], [`Error::ParameterShape`] and friends for a state ",
                "dict that is not a complete layer.",
            )]
            pub fn load(path: impl AsRef<std::path::Path>, prefix: Option<&str>) -> Result<Self> {
                let path = path.as_ref();
                let layers = crate::io::load_layers::<T>(path, prefix)?;
                let found = layers.config().kind;
                if found != $kind {
                    return Err(Error::WrongKind {
                        path: path.to_path_buf(),
                        found: found.name(),
                        wanted: $kind.name(),
                        config: layers.config().to_string(),
                    });
                }
                $ty::from_layers(layers)
            }
        }
    };
}

load_as!(Rnn, Kind::Rnn);
load_as!(Lstm, Kind::Lstm);
load_as!(Gru, Kind::Gru);

/// `RnnCell::load`, `LstmCell::load`, `GruCell::load`: the cell a state dict holds (a
/// cell's own, or a one-layer, one-direction layer's, which is the same computation).
macro_rules! load_cell_as {
    ($ty:ident, $kind:expr, |$c:ident, $tensors:ident| $build:expr) => {
        impl<T: Float> crate::cells::$ty<T> {
            #[doc = concat!(
                "Loads the ", stringify!($ty), " a state dict holds: a cell's own tensors ",
                "(`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, as torch names a cell's), or ",
                "those of a one-layer, one-direction layer (`weight_ih_l0`, ...), which computes ",
                "the same step. Any format `recurrent::load` reads; `prefix` as there.\n\n",
                "```no_run\n",
                "let cell = recurrent::", stringify!($ty), "::<f32>::load(\"cell.pt\", None)?;\n",
                "println!(\"{cell}\");\n",
                "# Ok::<(), recurrent::Error>(())\n",
                "```\n\n",
                "# Errors\n",
                "As [`crate::load`]'s; [`Error::WrongKind`] when the file holds another kind; ",
                "[`Error::UnsupportedModel`] for a layer with more than one layer, two ",
                "directions or a projection, which no cell computes.",
            )]
            pub fn load(path: impl AsRef<Path>, prefix: Option<&str>) -> Result<Self> {
                let path = path.as_ref();
                let layers = load_layers::<T>(path, prefix)?;
                let $c = layers.config().clone();
                if $c.kind != $kind {
                    return Err(Error::WrongKind {
                        path: path.to_path_buf(),
                        found: $c.kind.name(),
                        wanted: $kind.name(),
                        config: $c.to_string(),
                    });
                }
                if $c.num_layers != 1 || $c.bidirectional || $c.proj_size != 0 {
                    return Err(Error::UnsupportedModel(format!(
                        "{}: holds {}, which no single cell computes (a cell is one layer, one direction, no projection)",
                        path.display(),
                        $c
                    )));
                }
                let $tensors = layers.named_parameters().map(|(name, t)| {
                    (name.trim_end_matches("_l0").to_string(), t.to_owned())
                });
                $build
            }
        }
    };
}

load_cell_as!(RnnCell, Kind::Rnn, |c, tensors| {
    crate::cells::RnnCell::from_named(c.input_size, c.hidden_size, c.bias, c.nonlinearity, tensors)
});
load_cell_as!(LstmCell, Kind::Lstm, |c, tensors| {
    crate::cells::LstmCell::from_named(c.input_size, c.hidden_size, c.bias, tensors)
});
load_cell_as!(GruCell, Kind::Gru, |c, tensors| {
    crate::cells::GruCell::from_named(c.input_size, c.hidden_size, c.bias, tensors)
});

/// The one loading path of [`load`], `Rnn::load`, `Lstm::load` and `Gru::load`: reads
/// the state dict, resolves the prefix (detected when `None`), infers the configuration
/// (torch's defaults for what the metadata does not record) and converts to `T`.
pub(crate) fn load_layers<T: Float>(path: &Path, prefix: Option<&str>) -> Result<Layers<T>> {
    let dict = StateDict::read(path)?;
    let prefix = dict.resolve_prefix(prefix)?;
    let config = dict.infer_config(&prefix)?;
    dict.load_layers(&prefix, config)
}

/// How one staged output reaches its target.
#[derive(Debug)]
enum Target {
    /// A regular file (or none yet): the temporary file is renamed over it.
    Replace {
        /// The file the caller named, symbolic links resolved.
        resolved: PathBuf,
    },
    /// A character device or FIFO: the temporary file's bytes are written into it.
    InPlace,
    /// `-` or `/dev/stdout`: the bytes go to this process's standard output, as the
    /// shell opened it (appending for `>>`, into a pipe for `|`).
    Stdout,
}

/// One output written to its temporary file, waiting for [`OutputSet::commit`].
#[derive(Debug)]
struct Staged {
    /// The path the caller gave (for messages).
    path: PathBuf,
    target: Target,
    tmp: tempfile::NamedTempFile,
}

/// A set of output files that appear together or not at all.
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a.txt"), dir.path().join("missing/b.txt"));
/// let mut set = recurrent::io::OutputSet::new();
/// set.stage(&a, |w| w.write_all(b"one").map_err(|e| recurrent::Error::Io { path: a.clone(), source: e }))?;
/// // The second output's folder does not exist: nothing is written, not even a.txt.
/// let err = set.stage(&b, |w| w.write_all(b"two").map_err(|e| recurrent::Error::Io { path: b.clone(), source: e }));
/// assert!(err.is_err());
/// drop(set);
/// assert!(!a.exists());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct OutputSet {
    staged: Vec<Staged>,
}

/// The key two paths share when they name one file (device and inode on Unix, else the
/// canonical path).
fn file_key(path: &Path) -> Option<(u64, u64, PathBuf)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some((m.dev(), m.ino(), PathBuf::new()))
    }
    #[cfg(not(unix))]
    {
        Some((0, 0, fs::canonicalize(path).ok()?))
    }
}

/// Whether `a` and `b` name the same existing file (through links, `..`, hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (file_key(a), file_key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Whether `a` and `b`, which need not exist yet, name one path once their folders are
/// resolved (`out.npy` and `./out.npy`).
fn same_new_file(a: &Path, b: &Path) -> bool {
    let key = |p: &Path| {
        Some((
            fs::canonicalize(folder_of(p)).ok()?,
            p.file_name()?.to_owned(),
        ))
    };
    match (key(a), key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The error `tempfile` gives, without the temporary file's path it appends: messages
/// name the caller's path only.
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((message, _)) => std::io::Error::new(e.kind(), message.to_string()),
        None => e,
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refused(path: &Path, message: &str) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(message.to_string()),
    }
}

/// The folder a file at `path` lives in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Decides how `path` is written, without touching it.
fn classify(path: &Path) -> Result<Target> {
    if path == Path::new("-") || path == Path::new("/dev/stdout") {
        return Ok(Target::Stdout);
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let folder = folder_of(path);
            return match fs::metadata(folder) {
                Ok(m) if m.is_dir() => Ok(Target::Replace {
                    resolved: path.to_path_buf(),
                }),
                Ok(_) => Err(refused(
                    path,
                    &format!("'{}' is not a folder", folder.display()),
                )),
                Err(_) => Err(refused(
                    path,
                    &format!("the folder '{}' does not exist", folder.display()),
                )),
            };
        }
        Err(e) => return Err(io_error(path, e)),
    };
    if meta.file_type().is_symlink() {
        // What the link names: a pipe or socket behind /proc/self/fd has no path, so
        // the kind comes from following the link.
        #[cfg(unix)]
        if let Ok(followed) = fs::metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            let kind = followed.file_type();
            if kind.is_fifo() || kind.is_char_device() {
                return Ok(Target::InPlace);
            }
        }
        // Replace what the link points to, never the link itself.
        let resolved = fs::canonicalize(path).map_err(|_| {
            refused(
                path,
                "is a symbolic link to a file that does not exist (or a loop of links); give the target's path",
            )
        })?;
        return match classify(&resolved)? {
            Target::Replace { .. } => Ok(Target::Replace { resolved }),
            other => Ok(other),
        };
    }
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(Target::Replace {
            resolved: path.to_path_buf(),
        });
    }
    if kind.is_dir() {
        return Err(refused(path, "is a directory, expected a file path"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() || kind.is_fifo() {
            return Ok(Target::InPlace);
        }
        if kind.is_block_device() {
            return Err(refused(
                path,
                "is a block device; refusing to write an output onto it",
            ));
        }
    }
    Err(refused(
        path,
        "is not a regular file, character device or FIFO",
    ))
}

impl OutputSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one output to a temporary file; `path` appears only at [`commit`].
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` when it cannot be written (its folder is missing, it
    /// is a directory or block device, it names the same file as an output already
    /// staged, the disk is full), or whatever `write` returns. Nothing is left behind
    /// on error; the outputs staged before stay staged.
    ///
    /// [`commit`]: OutputSet::commit
    pub fn stage(
        &mut self,
        path: impl AsRef<Path>,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let path = path.as_ref();
        let target = classify(path)?;
        for other in &self.staged {
            // Two outputs to one device (`/dev/null` twice) are fine; two to one file
            // would leave only the second.
            let same = match (&target, &other.target) {
                (Target::Replace { resolved: a }, Target::Replace { resolved: b }) => {
                    a == b || same_file(a, b) || same_new_file(a, b)
                }
                _ => false,
            };
            if same {
                return Err(refused(
                    path,
                    &format!(
                        "names the same file as another output ({}); give each output its own path",
                        other.path.display()
                    ),
                ));
            }
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".recurrent-").suffix(".tmp");
        // tempfile creates 0600 files; an output file should get the usual 0666 & !umask.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o666));
        }
        let tmp_dir = match &target {
            Target::Replace { resolved } => folder_of(resolved).to_path_buf(),
            Target::InPlace | Target::Stdout => std::env::temp_dir(),
        };
        let mut tmp = builder
            .tempfile_in(&tmp_dir)
            .map_err(|e| io_error(path, without_temp_path(e)))?;
        // A replaced file keeps its permissions (a private 0600 file stays private).
        if let Target::Replace { resolved } = &target {
            if let Ok(meta) = fs::metadata(resolved) {
                fs::set_permissions(tmp.path(), meta.permissions())
                    .map_err(|e| io_error(path, e))?;
            }
        }
        {
            let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
            write(&mut writer)?;
            writer.flush().map_err(|e| io_error(path, e))?;
        }
        self.staged.push(Staged {
            path: path.to_path_buf(),
            target,
            tmp,
        });
        Ok(())
    }

    /// Moves every staged output into place: regular files by rename (the files they
    /// replace kept until all are in place), then devices and FIFOs written in place.
    ///
    /// # Errors
    /// [`Error::Io`] naming the output that failed; every target is then as it was
    /// before (a device or FIFO may have received part of its bytes).
    pub fn commit(self) -> Result<()> {
        let mut regular = Vec::new();
        let mut in_place = Vec::new();
        let mut stdout = Vec::new();
        for s in self.staged {
            match s.target {
                Target::Replace { ref resolved } => {
                    let resolved = resolved.clone();
                    regular.push((s.path, resolved, s.tmp));
                }
                Target::InPlace => in_place.push((s.path, s.tmp)),
                Target::Stdout => stdout.push((s.path, s.tmp)),
            }
        }
        // Devices and FIFOs are opened before anything is renamed: a FIFO nobody reads
        // blocks here, while every file is still as it was.
        let mut opened = Vec::with_capacity(in_place.len());
        for (path, tmp) in in_place {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            opened.push((path, tmp, file));
        }
        // Keep each file that will be replaced as a hard link beside it.
        let mut moves = Vec::with_capacity(regular.len());
        for (path, resolved, tmp) in regular {
            let kept = backup(&resolved).map_err(|e| io_error(&path, without_temp_path(e)))?;
            moves.push((path, resolved, tmp, kept));
        }
        let mut done: Vec<(PathBuf, Option<tempfile::TempPath>)> = Vec::new();
        let mut failure: Option<Error> = None;
        for (path, resolved, tmp, kept) in moves {
            // `persist` leaves both files as they were on failure.
            match tmp.persist(&resolved) {
                Ok(_) => done.push((resolved, kept)),
                Err(e) => {
                    failure = Some(io_error(&path, e.error));
                    break;
                }
            }
        }
        if failure.is_none() {
            for (path, tmp, file) in &mut opened {
                if let Err(e) = copy_into(tmp, file) {
                    failure = Some(io_error(path, e));
                    break;
                }
            }
        }
        if failure.is_none() {
            let mut out = std::io::stdout().lock();
            for (path, tmp) in &mut stdout {
                if let Err(e) = copy_into(tmp, &mut out) {
                    failure = Some(io_error(path, e));
                    break;
                }
            }
        }
        match failure {
            None => Ok(()), // dropping the backups removes the extra links
            Some(e) => {
                rollback(done);
                Err(e)
            }
        }
    }

    /// Whether an output of the set goes to standard output (`-` or `/dev/stdout`), so
    /// that messages must go elsewhere.
    pub fn writes_stdout(&self) -> bool {
        self.staged
            .iter()
            .any(|s| matches!(s.target, Target::Stdout))
    }
}

/// A hard link to `resolved` in its folder (a copy where links are unsupported), or
/// `None` when there is no file there yet.
fn backup(resolved: &Path) -> std::io::Result<Option<tempfile::TempPath>> {
    if fs::symlink_metadata(resolved).is_err() {
        return Ok(None);
    }
    let folder = folder_of(resolved);
    // Reserve a unique name, then link the original to it.
    let reserved = tempfile::Builder::new()
        .prefix(".recurrent-")
        .suffix(".bak")
        .tempfile_in(folder)?
        .into_temp_path();
    fs::remove_file(&reserved)?;
    if fs::hard_link(resolved, &reserved).is_err() {
        fs::copy(resolved, &reserved)?;
    }
    Ok(Some(reserved))
}

/// Puts back what the renames in `done` replaced: the kept original, or no file.
fn rollback(done: Vec<(PathBuf, Option<tempfile::TempPath>)>) {
    for (resolved, kept) in done.into_iter().rev() {
        match kept {
            Some(original) => {
                let _ = original.persist(&resolved);
            }
            None => {
                let _ = fs::remove_file(&resolved);
            }
        }
    }
}

/// Writes the bytes of a staged temporary file into a device, FIFO or stdout.
fn copy_into(tmp: &mut tempfile::NamedTempFile, out: &mut impl Write) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let file = tmp.as_file_mut();
    file.seek(SeekFrom::Start(0))?;
    std::io::copy(file, out)?;
    out.flush()
}
