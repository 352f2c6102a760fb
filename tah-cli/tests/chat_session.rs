//! `tah chat --session FILE` through the real binary on the default model:
//! a conversation continued in a second run answers exactly as one run
//! would have, and a damaged FILE is a clear error with a non-zero exit that
//! leaves the file as it was.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `tah chat` (greedy) with `input` on stdin.
fn chat(session: Option<&Path>, input: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tah"));
    command.args(["chat", "--temperature", "0", "--max-new-tokens", "24"]);
    if let Some(path) = session {
        command.arg("--session").arg(path);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tah");
    // A run that refuses its session file exits before reading its input:
    // then the write fails with a broken pipe, which is no error here.
    let written = child.stdin.take().unwrap().write_all(input.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_conversation_continues_across_runs_and_a_damaged_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("tah-chat-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("chat.tahstate");
    let (first, second) = ("What is 347 + 589?\n", "And what is 12 + 30?\n");

    let whole = chat(None, &format!("{first}{second}"));
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    let run1 = chat(Some(&state), first);
    assert!(run1.status.success(), "{}", text(&run1.stderr));
    assert!(state.is_file());
    let run2 = chat(Some(&state), second);
    assert!(run2.status.success(), "{}", text(&run2.stderr));
    assert!(
        text(&run2.stderr).contains("continuing the conversation"),
        "{}",
        text(&run2.stderr)
    );
    assert_eq!(
        text(&run1.stdout) + &text(&run2.stdout),
        text(&whole.stdout)
    );

    for damage in [&b"not a state"[..], &std::fs::read(&state).unwrap()[..100]] {
        std::fs::write(&state, damage).unwrap();
        let refused = chat(Some(&state), second);
        let stderr = text(&refused.stderr);
        println!("{stderr}");
        assert!(!refused.status.success());
        assert!(
            stderr.contains("session state") && stderr.contains("left as it is"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&state).unwrap(), damage);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
