//! The build context: `layerN/…` files with the generator's bytes, then a Dockerfile that
//! adds each layer directory as one layer and labels the image with its cache key.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::KEY_LABEL;
use crate::config::ImageConfig;
use crate::plan::{self, Entry, LayerPlan};
use crate::progress::Progress;
use crate::spec::Spec;
use crate::{interrupt, Error};

/// Large writes keep the syscall count low; the generator's output does not depend on it.
const CHUNK: usize = 1 << 20;

/// Writes every layer's files and the Dockerfile into `dir`, which exists and is empty;
/// `key` is the image's cache key, for its label; `seed` the content's
/// ([`crate::content::seed`]).
pub fn write(
    spec: &Spec,
    config: &ImageConfig,
    seed: &[u8; 32],
    key: &str,
    dir: &Path,
    progress: &mut Progress,
) -> Result<(), Error> {
    let layers = plan::layers(spec);
    let needed = spec.total_size();
    let mut buf = vec![0u8; CHUNK];
    progress.start(needed);
    for layer in &layers {
        write_layer(layer, seed, dir, needed, &mut buf, progress)?;
    }
    progress.finish();
    let dockerfile = dir.join("Dockerfile");
    fs::write(&dockerfile, text(&layers, config, key)).map_err(write_error(&dockerfile, needed))?;
    progress.stage(format!(
        "wrote {} ({} ADD line{})",
        dockerfile.display(),
        layers.len(),
        if layers.len() == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// `FROM scratch`, then one `ADD` per layer (each is one layer of the image), then the
/// config's instructions, then the [`KEY_LABEL`] with `key`. The label comes last, so that
/// only the finished image carries it, not the intermediate images a classic docker build
/// keeps; none of these add a layer.
pub fn text(layers: &[LayerPlan], config: &ImageConfig, key: &str) -> String {
    let mut text = String::from("FROM scratch\n");
    for layer in layers {
        let dir = layer.dir();
        text.push_str(&format!("ADD {dir} /{dir}\n"));
    }
    // The `run` layer's program, unless the config names an entrypoint of its own; this
    // builder makes linux/amd64 images.
    let run = layers.iter().find_map(|l| l.spec.run);
    if let (None, Some(argv)) = (
        config.entrypoint_args(),
        run.and_then(|run| crate::runnable::argv(&run, &crate::Platform::default())),
    ) {
        let json = serde_json::to_string(&argv).unwrap_or_else(|_| "[]".into());
        text.push_str(&format!("ENTRYPOINT {json}\n"));
    }
    text.push_str(&config_lines(config));
    text.push_str(&format!("LABEL {KEY_LABEL}={key}\n"));
    text
}

/// The Dockerfile instructions of `config`: JSON (exec) form for `ENTRYPOINT` and `CMD`, so
/// that no shell is added; every other value quoted, `$` escaped so nothing is expanded.
/// No `WORKDIR`: it would add a layer (`check_config` refuses one).
fn config_lines(config: &ImageConfig) -> String {
    let json = |args: &[String]| serde_json::to_string(args).unwrap_or_else(|_| "[]".into());
    let mut lines = String::new();
    if let Some(args) = config.entrypoint_args() {
        lines.push_str(&format!("ENTRYPOINT {}\n", json(args)));
    }
    if let Some(args) = config.cmd_args() {
        lines.push_str(&format!("CMD {}\n", json(args)));
    }
    for entry in config.env_entries() {
        if let Some((k, v)) = entry.split_once('=') {
            lines.push_str(&format!("ENV {}={}\n", quoted(k), quoted(v)));
        }
    }
    if let Some(user) = config.user_name() {
        lines.push_str(&format!("USER {}\n", quoted(user)));
    }
    for (k, v) in config.labels() {
        lines.push_str(&format!("LABEL {}={}\n", quoted(k), quoted(v)));
    }
    for port in config.exposed_ports() {
        lines.push_str(&format!("EXPOSE {port}\n"));
    }
    if let Some(signal) = config.stop_signal_name() {
        lines.push_str(&format!("STOPSIGNAL {signal}\n"));
    }
    lines
}

/// `"…"` with `\`, `"` and `$` escaped, as the Dockerfile's word parser reads it back.
fn quoted(value: &str) -> String {
    let mut out = String::from('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn write_layer(
    layer: &LayerPlan,
    seed: &[u8; 32],
    dir: &Path,
    needed: u64,
    buf: &mut [u8],
    progress: &mut Progress,
) -> Result<(), Error> {
    for entry in layer.entries() {
        let file = match entry {
            Entry::Dir(path) => {
                let path = dir.join(path);
                fs::create_dir(&path).map_err(write_error(&path, needed))?;
                // Fixed modes, whatever the umask: the engine copies them into the image.
                fs::set_permissions(&path, Permissions::from_mode(0o755))
                    .map_err(write_error(&path, needed))?;
                continue;
            }
            Entry::File(file) => file,
            // An engine copies links as they are: a symlink keeps its target, hard links
            // stay one file.
            Entry::Symlink { path, target } => {
                let path = dir.join(path);
                std::os::unix::fs::symlink(&target, &path).map_err(write_error(&path, needed))?;
                continue;
            }
            Entry::Hardlink { path, target, .. } => {
                let path = dir.join(path);
                fs::hard_link(dir.join(&target), &path).map_err(write_error(&path, needed))?;
                continue;
            }
            // Refused before a context is written (`check`): a Dockerfile cannot delete.
            Entry::Whiteout(path) => {
                return Err(Error::Io {
                    action: "write a whiteout",
                    path: dir.join(path),
                    source: io::ErrorKind::Unsupported.into(),
                })
            }
        };
        let path = dir.join(&file.path);
        let mut out = File::create(&path).map_err(write_error(&path, needed))?;
        out.set_permissions(Permissions::from_mode(file.mode))
            .map_err(write_error(&path, needed))?;
        let mut content = crate::content::FileContent::of(layer, seed, &file);
        while content.remaining() > 0 {
            interrupt::check()?;
            let n = content.fill(buf);
            out.write_all(&buf[..n])
                .map_err(write_error(&path, needed))?;
            progress.inc(n as u64);
        }
    }
    Ok(())
}

/// A full disk names the path and the space the whole context needs; anything else is an
/// ordinary write error.
fn write_error(path: &Path, needed: u64) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| match source.raw_os_error() {
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => {
            Error::NoSpace { path, needed }
        }
        _ => Error::Io {
            action: "write",
            path,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_as_instructions() {
        let spec = Spec::parse("1KB").expect("valid");
        let config = ImageConfig::new()
            .entrypoint("/bin/app -v")
            .and_then(|c| c.cmd(r#"["a \"b\""]"#))
            .and_then(|c| c.env("P=$HOME x"))
            .and_then(|c| c.user("1:2"))
            .and_then(|c| c.label("a.b=c"))
            .and_then(|c| c.expose("53/udp"))
            .and_then(|c| c.stop_signal("INT"))
            .expect("valid");
        assert_eq!(
            text(&plan::layers(&spec), &config, "k"),
            concat!(
                "FROM scratch\nADD layer1 /layer1\n",
                "ENTRYPOINT [\"/bin/app\",\"-v\"]\n",
                "CMD [\"a \\\"b\\\"\"]\n",
                "ENV \"P\"=\"\\$HOME x\"\n",
                "USER \"1:2\"\n",
                "LABEL \"a.b\"=\"c\"\n",
                "EXPOSE 53/udp\n",
                "STOPSIGNAL SIGINT\n",
                "LABEL dev.image-maker.key=k\n"
            )
        );
    }

    #[test]
    fn one_add_per_layer() {
        let spec = Spec::parse("2MB:files=3,1KB").expect("valid");
        assert_eq!(
            text(&plan::layers(&spec), &ImageConfig::new(), "abc123"),
            "FROM scratch\nADD layer1 /layer1\nADD layer2 /layer2\nLABEL dev.image-maker.key=abc123\n"
        );
    }

    #[test]
    fn a_full_disk_names_the_path_and_the_size() {
        let full = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        let error = write_error(Path::new("/tmp/x/layer1/1GB-file"), 1 << 30)(full);
        assert_eq!(
            error.to_string(),
            "no space left on the device holding `/tmp/x/layer1/1GB-file` (the build context needs 1.00 GiB, 1073741824 bytes)"
        );
        assert!(error.hint().is_some_and(|h| h.contains("--build-dir")));
        let other = io::Error::from_raw_os_error(nix::libc::EACCES);
        let error = write_error(Path::new("/tmp/x"), 1)(other);
        assert!(matches!(error, Error::Io { .. }), "{error}");
    }
}
