#![no_main]
//! Arbitrary bytes as a user message: UTF-8 check, chat template render,
//! encode, decode and streaming decode with the real Qwen3 tokenizer.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tah_core::chat_template::{ChatMessage, ChatTemplate};
use tah_core::tokenizer::{StreamDecoder, TahTokenizer};

fn assets() -> &'static (TahTokenizer, ChatTemplate) {
    static ASSETS: OnceLock<(TahTokenizer, ChatTemplate)> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tah-core/tests/fixtures/qwen3-tokenizer");
        let tokenizer = TahTokenizer::from_file(&dir.join("tokenizer.json")).expect("fixture tokenizer");
        let template = ChatTemplate::from_tokenizer_config(&dir.join("tokenizer_config.json")).expect("fixture template");
        (tokenizer, template)
    })
}

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 never reaches the tokenizer: strings are checked at the edge.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (tokenizer, template) = assets();
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user(text)];
    let Ok(prompt) = template.render(&messages, true, text.len() % 2 == 0) else { return };
    let Ok(ids) = tokenizer.encode(&prompt) else { return };
    let whole = tokenizer.decode(&ids).expect("ids from encode decode");
    let mut stream = StreamDecoder::new(tokenizer);
    let mut streamed = String::new();
    for &id in &ids {
        streamed.push_str(&stream.push(id).expect("known id"));
    }
    streamed.push_str(&stream.finish().expect("finish"));
    assert_eq!(streamed, whole, "streaming decode must equal decode");
});
