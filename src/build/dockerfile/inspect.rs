//! What the engine built: the image ID and the layers' diff_ids, as the engine reports them.

use serde_json::Value;

use crate::engine::{Engine, EngineKind};
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inspected {
    /// `sha256:…` of the config: the image ID.
    pub id: String,
    pub diff_ids: Vec<String>,
    /// `os/arch[/variant]` as the image's config says.
    pub platform: String,
}

pub(crate) fn inspect(engine: &Engine, reference: &str) -> Result<Inspected, Error> {
    // buildah has no `image inspect`; its `inspect` prints one object rather than a list.
    let args: &[&str] = match engine.kind {
        EngineKind::Buildah => &["inspect", "--type", "image", reference],
        _ => &["image", "inspect", reference],
    };
    let command = format!("{} {}", engine.kind, args[..args.len() - 1].join(" "));
    let stdout = engine.stdout(args, command.clone())?;
    parse(engine.kind, &stdout).ok_or_else(|| Error::EngineFailed {
        command,
        detail: "its output has no image ID and layers".to_owned(),
    })
}

fn parse(kind: EngineKind, json: &[u8]) -> Option<Inspected> {
    let value: Value = serde_json::from_slice(json).ok()?;
    let (id, layers, config, keys) = match kind {
        EngineKind::Buildah => {
            let config = value.get("OCIv1")?;
            (
                value.get("FromImageID")?,
                config.get("rootfs")?.get("diff_ids")?,
                config,
                ["os", "architecture", "variant"],
            )
        }
        _ => {
            let image = value.get(0)?;
            let keys = ["Os", "Architecture", "Variant"];
            (
                image.get("Id")?,
                image.get("RootFS")?.get("Layers")?,
                image,
                keys,
            )
        }
    };
    let platform = keys
        .iter()
        .filter_map(|k| config.get(k).and_then(Value::as_str))
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let id = id.as_str()?;
    let diff_ids = layers
        .as_array()?
        .iter()
        .map(|l| l.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    Some(Inspected {
        // podman and buildah print the bare hex.
        id: if id.starts_with("sha256:") {
            id.to_owned()
        } else {
            format!("sha256:{id}")
        },
        diff_ids,
        platform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_podman_and_buildah() {
        let docker = br#"[{"Id":"sha256:abc","Os":"linux","Architecture":"arm","Variant":"v7",
            "RootFS":{"Type":"layers","Layers":["sha256:1","sha256:2"]}}]"#;
        let podman = br#"[{"Id":"abc","Os":"linux","Architecture":"arm","Variant":"v7",
            "RootFS":{"Type":"layers","Layers":["sha256:1","sha256:2"]}}]"#;
        let buildah = br#"{"FromImageID":"abc","OCIv1":{"os":"linux","architecture":"arm",
            "variant":"v7","rootfs":{"type":"layers","diff_ids":["sha256:1","sha256:2"]}}}"#;
        let want = Some(Inspected {
            id: "sha256:abc".into(),
            diff_ids: vec!["sha256:1".into(), "sha256:2".into()],
            platform: "linux/arm/v7".into(),
        });
        assert_eq!(parse(EngineKind::Docker, docker), want);
        assert_eq!(parse(EngineKind::Podman, podman), want);
        assert_eq!(parse(EngineKind::Buildah, buildah), want);
        assert_eq!(parse(EngineKind::Docker, b"[]"), None);
    }
}
