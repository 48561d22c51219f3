//! Property tests of the user-facing grammars: whatever is typed, parsing answers with a
//! value or an error, never a panic; and every accepted spec's canonical form is itself
//! accepted, as the same spec with the same canonical form (the cache key hashes it).

use proptest::prelude::*;
use proptest::sample::select;

use crate::reference::Reference;
use crate::spec::*;

/// Parses `list` every way the faces do, checking what holds for any input.
fn check_spec(list: &str) -> Result<(), TestCaseError> {
    let _ = parse_byte_size(list);
    let _ = Spec::parse_with_count(list, Some(3));
    let Ok(spec) = Spec::parse(list) else {
        return Ok(());
    };
    let canonical = spec.canonical();
    let again = Spec::parse(&canonical)
        .map_err(|e| TestCaseError::fail(format!("`{canonical}` from `{list}`: {e}")))?;
    prop_assert_eq!(&again.canonical(), &canonical);
    prop_assert_eq!(&again, &spec);
    Ok(())
}

fn check_reference(input: &str) -> Result<(), TestCaseError> {
    let Ok(reference) = Reference::parse(input) else {
        return Ok(());
    };
    prop_assert_eq!(
        Reference::parse(&reference.to_string()),
        Ok(reference.clone())
    );
    prop_assert!(Reference::parse(&reference.normalized()).is_ok());
    Ok(())
}

/// One list entry made of the grammar's pieces, well-formed or not: counts, numbers,
/// units in every spelling, options, and the junk that sits next to them when people type.
fn entry() -> impl Strategy<Value = String> {
    // Mostly good parts, so that a fair share of lists is accepted.
    fn piece(good: Vec<&'static str>, bad: Vec<&'static str>) -> impl Strategy<Value = String> {
        prop_oneof![8 => select(good), 1 => select(bad)].prop_map(str::to_owned)
    }
    let count = piece(
        vec!["", "", "", "1x", "2x", "3X", "10x", "2 x "],
        vec![
            "0x",
            "x",
            "-1x",
            "1.5x",
            "3x3x",
            "+2x",
            "10001x",
            "99999999999999999999x",
        ],
    );
    let number = prop_oneof![
        8 => (1u64..5000).prop_map(|n| n.to_string()),
        1 => (0u64..100, 0u64..1000).prop_map(|(w, f)| format!("{w}.{f}")),
        1 => select(vec!["", "0", ".", ".5", "1.2.3", "-1", "1e3", "18446744073709551615"])
            .prop_map(str::to_owned),
    ];
    let unit = piece(
        vec![
            "", "B", "b", "K", "k", "KB", "kb", "Kb", "KiB", "kib", "M", "m", "MB", "mB", "MiB",
            "G", "g", "GB", "Gb", "GiB", "T", "t", "TB", "TiB", " MB",
        ],
        vec!["XB", "PB", "x", "Ki", "X"],
    );
    let option = piece(
        vec![
            "",
            "",
            "",
            ":files=2",
            ":files=1000",
            ":tree=5",
            ":tree=300",
            ":ratio=4",
            ":ratio=2.5",
            ":compression=gzip",
            ":compression=none",
            ":compression=zstd:level=9",
            ":level=1:compression=gzip:tree=3",
        ],
        vec![
            ":files=0",
            ":files=",
            ":",
            ":depth=3",
            ":files=2:tree=2",
            ":files=+1",
            ":tree=x",
            ":ratio=0",
            ":ratio=1.001",
            ":compression=lz4",
            ":level=3",
            ":compression=gzip:level=10",
        ],
    );
    (count, number, unit, option).prop_map(|(c, n, u, o)| format!("{c}{n}{u}{o}"))
}

/// Layer lists that parse by construction, with the layers they must parse to.
fn valid_list() -> impl Strategy<Value = (String, Vec<LayerSpec>)> {
    let spellings: [(u64, &[&str]); 5] = [
        (1, &["B", "b"]),
        (1 << 10, &["K", "k", "KB", "kb", "Kb", "KiB", "kib"]),
        (1 << 20, &["", "M", "m", "MB", "mb", "MiB"]),
        (1 << 30, &["G", "g", "GB", "gB", "GiB"]),
        (1 << 40, &["T", "t", "TB", "TiB"]),
    ];
    let layer = (
        select(spellings.to_vec()),
        any::<prop::sample::Index>(),
        1u64..3000,
        prop::option::of((any::<bool>(), 1u64..2000)),
        1usize..4,
        any::<bool>(),
    )
        .prop_map(
            |((unit, names), name, number, files, repeat, always_count)| {
                let size = number * unit;
                let (layout, files) = match files {
                    Some((true, n)) => (Layout::Tree, n.min(size)),
                    Some((false, n)) => (Layout::Flat, n.min(size)),
                    None => (Layout::Flat, 1),
                };
                let mut text = String::new();
                if repeat > 1 || always_count {
                    text.push_str(&format!("{repeat}x"));
                }
                text.push_str(&format!("{number}{}", name.get(names)));
                if files > 1 || layout == Layout::Tree {
                    text.push_str(&format!(":{}={files}", layout.option()));
                }
                let layer = LayerSpec {
                    files,
                    layout,
                    ..LayerSpec::new(size)
                };
                (text, vec![layer; repeat])
            },
        );
    prop::collection::vec(layer, 1..5).prop_map(|entries| {
        let (texts, layers): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        (texts.join(","), layers.concat())
    })
}

/// Reference-shaped strings: hosts, ports, paths, tags, digests, near misses.
fn reference_like() -> impl Strategy<Value = String> {
    let host = select(vec![
        "",
        "",
        "localhost/",
        "localhost:5000/",
        "registry.example/",
        "127.0.0.1:5000/",
        "Reg.Example/",
        "-bad.host/",
        ":5000/",
    ]);
    let path = "[a-zA-Z0-9._/-]{0,24}";
    let tag = select(vec![
        "",
        "",
        ":1",
        ":latest",
        ":V1.0_rc-2",
        ":",
        ":.hidden",
        ":-x",
        "@sha256:abc",
    ]);
    (host, path, tag).prop_map(|(h, p, t)| format!("{h}{p}{t}"))
}

proptest! {
    // Quick enough for a 2-core CI: parsing is microseconds, so the default 256 cases each.

    #[test]
    fn any_text_parses_or_errs(text in any::<String>()) {
        check_spec(&text)?;
        check_reference(&text)?;
    }

    #[test]
    fn grammar_pieces_parse_or_err(entries in prop::collection::vec(entry(), 1..5)) {
        check_spec(&entries.join(","))?;
    }

    #[test]
    fn well_formed_lists_parse_to_their_layers((list, layers) in valid_list()) {
        let spec = Spec::parse(&list).map_err(|e| TestCaseError::fail(format!("`{list}`: {e}")))?;
        prop_assert_eq!(spec.layers(), &layers[..]);
        check_spec(&list)?;
    }

    #[test]
    fn references_parse_or_err(input in reference_like()) {
        check_reference(&input)?;
    }
}
