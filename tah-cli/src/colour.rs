//! Colouring tokens by the number of passes they took (like the reference demo).

use std::io::IsTerminal;

/// Whether stdout is a terminal that should get ANSI colours.
pub fn enabled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` wrapped in the colour for `depth` passes (depth 1 is left plain).
pub fn by_depth(text: &str, depth: usize, colour: bool) -> String {
    if !colour || depth <= 1 {
        return text.to_string();
    }
    // Depth 2: bold yellow background; deeper: red.
    let code = if depth == 2 { "30;43" } else { "97;41" };
    format!("\x1b[{code}m{text}\x1b[0m")
}
