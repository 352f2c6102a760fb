//! The repository's copy of the fixtures must stay byte-identical to the
//! project's shared fixtures (`../shared/fixtures`) when those are present.

mod common;

use std::path::Path;

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn repository_fixtures_match_shared_fixtures() {
    let ours = common::fixture_dir();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    if !shared.exists() {
        eprintln!(
            "{} not present (a clone outside the team workspace): nothing to compare",
            shared.display()
        );
        return;
    }
    let files = files_under(&shared);
    assert_eq!(files, files_under(&ours), "file lists differ");
    for f in files {
        let same = std::fs::read(shared.join(&f)).unwrap() == std::fs::read(ours.join(&f)).unwrap();
        assert!(same, "{f} differs from ../shared/fixtures/{f}");
    }
}
