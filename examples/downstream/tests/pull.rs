//! Pull code tested against a registry inside the test process: `MockRegistry` serves any
//! spec by its tag, with the digests a fixture of the same spec has.

use downstream::fetch_manifest;
use image_maker::MockRegistry;

#[test]
fn pulls_the_manifest_a_fixture_of_the_same_spec_has() {
    let registry = MockRegistry::start().unwrap();
    let reference = registry.reference("2MB,512KB:files=10");
    assert_eq!(
        reference,
        format!("{}/mock:2MB_512KB.files-10", registry.host())
    );
    let (manifest, digest) =
        fetch_manifest(&registry.host(), "mock", "2MB_512KB.files-10").unwrap();
    // The digest the registry sent is the manifest's, and the image's a fixture builds.
    let fixture = image_maker::fixture("2MB,512KB:files=10").unwrap();
    assert_eq!(digest, fixture.digest());
    let json = String::from_utf8(manifest).unwrap();
    assert!(json.contains(&fixture.layers()[0].digest), "{json}");
}

#[test]
fn faults_are_a_repository_away() {
    let registry = MockRegistry::start().unwrap();
    let flaky = registry.try_reference("faults/flaky/mock", "1KB").unwrap();
    assert!(flaky.ends_with("/faults/flaky/mock:1KB"), "{flaky}");
    let first = fetch_manifest(&registry.host(), "faults/flaky/mock", "1KB");
    assert!(first.unwrap_err().to_string().starts_with("HTTP/1.1 503"));
    assert!(fetch_manifest(&registry.host(), "faults/flaky/mock", "1KB").is_ok());
}
