//! Where dynamic activation's device secret goes: a file only its owner reads, never replaced
//! by accident, written and made durable.

use crate::secret::Secret;

/// A file for a device secret, readable by its owner only (mode 0600). An existing file is
/// refused unless `force`: a secret is not something to overwrite by accident. Opened before
/// the secret is acknowledged, so a file that cannot be written never costs the secret.
pub(crate) fn secret_file(file: &std::path::Path, force: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(!force)
        .create(force)
        .truncate(force)
        .mode(0o600)
        .open(file)?;
    // `mode` only applies to a file created now; a replaced one gets it here.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Write the secret, with a newline, and make it durable.
pub(crate) fn write_secret(mut f: std::fs::File, secret: &Secret) -> std::io::Result<()> {
    use std::io::Write;
    let text = zeroize::Zeroizing::new(format!("{}\n", secret.expose_for_login()));
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
