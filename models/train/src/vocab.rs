//! The model's own character-level tokenizer and ChatML chat template,
//! written as the `tokenizer.json` / `tokenizer_config.json` a Hugging Face
//! checkpoint carries, so the runtime loads them like any other model's.

use std::path::Path;

use serde_json::{json, Value};
use tah_core::chat_template::{ChatMessage, ChatTemplate};
use tah_core::tokenizer::TahTokenizer;

/// Added special tokens, ids 0.. in this order.
pub const SPECIALS: [&str; 5] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
];
pub const IM_END: u32 = 2;
pub const UNK: &str = "<unk>";

/// Every character the tokenizer knows (ids after the specials and `<unk>`).
const CHARS: &str =
    "0123456789+-*/=?.,:;!'\"()#$%{}\\ \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// ChatML, as Qwen3 writes it; `enable_thinking=false` adds the empty think block.
pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";

/// Number of ids (specials, `<unk>`, characters).
pub fn vocab_size() -> usize {
    SPECIALS.len() + 1 + CHARS.chars().count()
}

/// `tokenizer.json`: a BPE model without merges over single characters, so
/// every character is one token; a `Fuse` decoder joins them back.
pub fn tokenizer_json() -> Value {
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut vocab = serde_json::Map::new();
    for (id, s) in SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(id));
    }
    vocab.insert(UNK.into(), json!(SPECIALS.len()));
    for (i, c) in CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), json!(SPECIALS.len() + 1 + i));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": UNK,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

pub fn tokenizer_config_json() -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": UNK, "model_max_length": 512, "add_bos_token": false,
        "chat_template": CHAT_TEMPLATE,
    })
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn write_files(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string_pretty(&tokenizer_json())?,
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tokenizer_config_json())?,
    )?;
    Ok(())
}

/// Tokenizer + template, as the runtime will see them.
pub struct Codec {
    pub tokenizer: TahTokenizer,
    pub template: ChatTemplate,
}

impl Codec {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Codec {
            tokenizer: TahTokenizer::from_json(&tokenizer_json().to_string())?,
            template: ChatTemplate::from_source(CHAT_TEMPLATE)?,
        })
    }

    /// The prompt ids of one user question (generation prompt, thinking on).
    pub fn prompt(&self, question: &str) -> anyhow::Result<Vec<u32>> {
        let text = self
            .template
            .render(&[ChatMessage::user(question)], true, true)?;
        Ok(self.tokenizer.encode(&text)?)
    }

    /// Prompt + solution + `<|im_end|>`, and the prompt's length.
    pub fn example(&self, question: &str, solution: &str) -> anyhow::Result<(Vec<u32>, usize)> {
        let mut ids = self.prompt(question)?;
        let n = ids.len();
        ids.extend(self.tokenizer.encode(solution)?);
        ids.push(IM_END);
        Ok((ids, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_renders_chatml() {
        let codec = Codec::new().unwrap();
        let text = "What is 347 + 589?\n7+9=16\n#### 936 {x}";
        let ids = codec.tokenizer.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(codec.tokenizer.decode(&ids).unwrap(), text);
        assert_eq!(codec.tokenizer.max_token_id() as usize + 1, vocab_size());
        let prompt = codec.prompt("Hi").unwrap();
        assert_eq!(
            codec.tokenizer.decode(&prompt).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(prompt[0], 1);
        assert_eq!(codec.tokenizer.token_to_id("</think>"), Some(4));
    }
}
