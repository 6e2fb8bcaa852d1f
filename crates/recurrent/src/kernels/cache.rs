//! The size of the CPU's last-level cache, for choices that depend on whether a step's
//! weights stay in it from one step to the next.

use std::sync::OnceLock;

/// What [`last_level_cache_bytes`] answers where the system reports no cache: the L3 of
/// one Zen 3-5 core complex, smaller than a current Intel server's, so that the choices
/// it drives err towards keeping a step's working set small.
const UNREPORTED_BYTES: usize = 32 << 20;

/// Bytes of the highest cache level that CPU 0 reports (Linux:
/// `/sys/devices/system/cpu/cpu0/cache/index*/{level,size}`), read once per process;
/// [`UNREPORTED_BYTES`] where nothing is reported or it cannot be read. A VM reports what
/// its host's CPU has, which neighbours on the same host share.
pub(crate) fn last_level_cache_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| read_sysfs().unwrap_or(UNREPORTED_BYTES))
}

fn read_sysfs() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut best: Option<(u32, usize)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
        let (Some(level), Some(size)) = (read("level"), read("size")) else {
            continue;
        };
        let (Ok(level), Some(bytes)) = (level.trim().parse::<u32>(), parse_size(&size)) else {
            continue;
        };
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, bytes));
        }
    }
    best.map(|(_, bytes)| bytes).filter(|&b| b > 0)
}

/// A sysfs cache size: a decimal number of bytes with an optional `K`, `M` or `G` suffix
/// (powers of 1024), as in `32768K`.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1usize << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_sizes() {
        assert_eq!(parse_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }
}
