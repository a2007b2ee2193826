//! Files only their owner may read (0600): what openport writes that holds secrets or buyers'
//! details, whatever the umask (the common 022 would let every local user read them).

/// Opens `path` for writing, created with mode 0600. With `replace`, an existing file is
/// truncated (keeping its own permissions); without, an existing file is an `AlreadyExists` error.
pub fn create(path: &std::path::Path, replace: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
