//! Finding the image an earlier build left in the engine: the Dockerfile labels every image
//! with its cache key ([`KEY_LABEL`]), and the engine lists images by label.

use super::inspect::{self, Inspected};
use super::KEY_LABEL;
use crate::engine::Engine;
use crate::Error;

/// The newest image in `engine` labelled with `key` and built for `platform`, if any.
/// An image removed while it is looked at is one that is not there.
pub(crate) fn find(engine: &Engine, key: &str, platform: &str) -> Result<Option<Inspected>, Error> {
    Ok(ids(engine, key)?.iter().find_map(|id| {
        inspect::inspect(engine, id)
            .ok()
            // Someone may have built the emitted context for another platform.
            .filter(|image| image.platform == platform)
    }))
}

/// The IDs of the images labelled with `key`, newest first (as every engine lists them).
fn ids(engine: &Engine, key: &str) -> Result<Vec<String>, Error> {
    let args = args(key);
    let command = format!("{} {}", engine.kind, args.join(" "));
    Ok(parse(&engine.stdout(&args, command)?))
}

/// `images --filter label=KEY_LABEL=KEY --format {{.ID}} --no-trunc`: the same words for
/// docker, podman, buildah, nerdctl and finch.
fn args(key: &str) -> Vec<String> {
    [
        "images",
        "--filter",
        &format!("label={KEY_LABEL}={key}"),
        "--format",
        "{{.ID}}",
        "--no-trunc",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// One ID a line; docker repeats an image once per tag, so each is kept once, in order.
fn parse(stdout: &[u8]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in String::from_utf8_lossy(stdout).lines().map(str::trim) {
        if !id.is_empty() && !ids.iter().any(|seen| seen == id) {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// `<engine> tag ID REFERENCE`; `false` when the image is gone meanwhile (or the engine
/// refuses), so that the caller builds instead.
pub(crate) fn tag(engine: &Engine, id: &str, reference: &str) -> bool {
    engine
        .cmd(["tag", id, reference])
        .stdin_null()
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|out| out.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_by_label() {
        assert_eq!(
            args("abc").join(" "),
            "images --filter label=dev.image-maker.key=abc --format {{.ID}} --no-trunc"
        );
    }

    #[test]
    fn ids_once_each_in_order() {
        assert_eq!(
            parse(b"sha256:b\nsha256:a\n\nsha256:b\n  sha256:c  \n"),
            ["sha256:b", "sha256:a", "sha256:c"]
        );
        assert!(parse(b"").is_empty());
    }
}
